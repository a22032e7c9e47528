"""The UIs as a user meets them: real servers on free 127.0.0.1 ports over a fresh LTE home, driven
by headless Chromium from Debian's package through Playwright (never a downloaded browser build).

Session layout (the whole directory shares one set of servers, ~2-3 minutes on 2 cores):
1. `ui_home`: a temporary LTE_HOME with the tiny, quick settings of tests/test_end_to_end.py and
   the Dagster instance `make demo` / `make ui` use (orchestration.instance: telemetry and the
   community pop-up off, queued runs).
2. `servers`: the four processes `infra/ui.sh` starts (Dagster webserver + daemon, MLflow server,
   Evidently UI), each in its own session so teardown kills the whole process group, also on failure.
3. `pipeline_run`: the tiny pipeline launched from the Dagster UI (the `full_pipeline` job's
   Launchpad), followed to its end through /graphql. The MLflow and Evidently tests look at its output.

Screenshots go to a temporary directory (printed), or to $LTE_BROWSER_SHOTS when set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_env import QUICK

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
QUIET = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1",
         "TRANSFORMERS_OFFLINE": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
# Every asset of the chain, in pipeline order (docs/architecture.md).
CHAIN = ("events", "items", "content_basis", "lte_snapshots", "lte_live", "trained_model",
         "baseline_model", "offline_evaluation", "registered_model", "champion_model", "lte_drift_report")
SERVER_START_S = 240  # a loaded 2-core machine needs ~40 s; generous so a slow CI does not flake
PIPELINE_RUN_S = 600


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    in_browser = [here in Path(str(item.fspath)).parents for item in items]
    for item, browser_test in zip(items, in_browser, strict=True):
        if browser_test:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
    # Browser tests run last: Playwright's sync API keeps an asyncio loop running in the main thread
    # until the session-scoped browser stops, and asyncio.run() (Dagster's automation evaluation)
    # fails in any test that would run after them in the same session.
    items[:] = [i for i, b in zip(items, in_browser, strict=True) if not b] + \
               [i for i, b in zip(items, in_browser, strict=True) if b]


def chromium_path() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, payload: dict | None = None, timeout: float = 30) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@dataclass
class Servers:
    home: Path
    logs: Path
    dagster: str
    mlflow: str
    evidently: str

    def log_tail(self, name: str, chars: int = 4000) -> str:
        """The end of a server's log (dagster-webserver, dagster-daemon, mlflow, evidently)."""
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def get_json(self, url: str) -> dict | list:
        return http_json(url)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        answer = http_json(f"{self.dagster}/graphql", {"query": query, "variables": variables or {}})
        if answer.get("errors"):
            raise AssertionError(f"Dagster GraphQL error: {answer['errors']}")
        return answer["data"]


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium at /usr/bin/chromium: install Debian's package "
                    "(apt-get update && apt-get install -y chromium; .ci/run does this)")
    return path


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    target = os.environ.get("LTE_BROWSER_SHOTS")
    directory = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {directory}")
    return directory


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory, chromium) -> Path:
    """A fresh LTE home with the Dagster instance config that `make demo` writes."""
    from lte.config import load_settings
    from orchestration.instance import ensure_dagster_home

    home = tmp_path_factory.mktemp("ui") / "home"
    saved = {key: os.environ.get(key) for key in ("DAGSTER_HOME", "LTE_HOME")}
    try:
        dagster_home = ensure_dagster_home(load_settings(home=home))
    finally:  # ensure_dagster_home points this process at the temp instance; undo that
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    instance_yaml = (dagster_home / "dagster.yaml").read_text()
    for section in ("telemetry", "nux"):
        assert re.search(rf"^{section}:\s*\n\s+enabled:\s*false", instance_yaml, re.M), (
            f"{dagster_home}/dagster.yaml must disable {section} (the UI test sees the community modal otherwise)"
        )
    return home


def _start(name: str, argv: list[str], env: dict, logs: Path) -> subprocess.Popen:
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 (closed in _stop_all)
    # Own session = own process group: the webserver's code server and the daemon's run workers
    # are children, and killing the group leaves nothing behind.
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    process.log = log  # type: ignore[attr-defined]
    return process


def _stop_all(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every process group at once, SIGKILL whatever is left after 15 s."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # the leader is gone or stuck; children (code servers, run workers) may remain
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        process.log.close()  # type: ignore[attr-defined]


def _wait_ready(processes: dict[str, subprocess.Popen], urls: dict[str, str], logs: Path) -> None:
    pending = dict(urls)
    deadline = time.monotonic() + SERVER_START_S
    while pending:
        for name, url in list(pending.items()):
            if processes[name].poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {processes[name].returncode} before answering {url}:\n{tail}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                del pending[name]
            except (urllib.error.URLError, OSError):
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {SERVER_START_S} s: {sorted(pending)}; logs in {logs}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def servers(ui_home, tmp_path_factory):
    """The processes `make ui` (infra/ui.sh) starts, on free 127.0.0.1 ports, over `ui_home`."""
    from lte.config import load_settings

    settings = load_settings(home=ui_home)
    logs = tmp_path_factory.mktemp("server-logs")
    ports = {name: free_port() for name in ("dagster", "mlflow", "evidently")}
    env = {**os.environ, **QUIET, **QUICK, "LTE_HOME": str(ui_home),
           "DAGSTER_HOME": str(settings.dagster_home.resolve())}
    settings.evidently_workspace.mkdir(parents=True, exist_ok=True)
    commands = {
        "dagster-webserver": [str(BIN / "dagster-webserver"), "-m", "orchestration.definitions",
                              "-h", "127.0.0.1", "-p", str(ports["dagster"])],
        "dagster-daemon": [str(BIN / "dagster-daemon"), "run", "-m", "orchestration.definitions"],
        "mlflow": [str(BIN / "mlflow"), "server", "--backend-store-uri", settings.mlflow_tracking_uri,
                   "--default-artifact-root", settings.mlflow_artifact_location,
                   "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--workers", "1"],
        "evidently": [str(BIN / "evidently"), "ui", "--workspace", str(settings.evidently_workspace),
                      "--host", "127.0.0.1", "--port", str(ports["evidently"])],
    }
    urls = {"dagster": f"http://127.0.0.1:{ports['dagster']}",
            "mlflow": f"http://127.0.0.1:{ports['mlflow']}",
            "evidently": f"http://127.0.0.1:{ports['evidently']}"}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            if name != "dagster-daemon":
                processes[name] = _start(name, argv, env, logs)
        _wait_ready(processes, {"dagster-webserver": f"{urls['dagster']}/server_info",
                                "mlflow": f"{urls['mlflow']}/health",
                                "evidently": f"{urls['evidently']}/api/version"}, logs)
        # The daemon only after the webserver has created the instance's sqlite storage: two
        # processes initialising a fresh DAGSTER_HOME at once race on its schema migrations.
        processes["dagster-daemon"] = _start("dagster-daemon", commands["dagster-daemon"], env, logs)
        yield Servers(home=ui_home, logs=logs, **urls)
    finally:
        _stop_all(list(processes.values()))


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    tab = context.new_page()
    yield tab
    context.close()


def open_asset_graph(tab, servers: Servers) -> None:
    """The global asset lineage, navigation and asset tree hidden, every group expanded (groups
    start collapsed; expanding re-fits the graph to the now wider canvas)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    tab.goto(f"{servers.dagster}/asset-groups")
    try:
        tab.get_by_role("button", name="Materialize all").wait_for()
    except PlaywrightTimeout:
        raise AssertionError("the asset graph did not load (code location not loaded?); webserver log:\n"
                             + servers.log_tail("dagster-webserver")) from None
    if tab.get_by_text("Join the Dagster community").count():
        raise AssertionError("the Dagster community pop-up is shown: dagster.yaml must set nux.enabled: false")
    # More room for the graph: hide the asset tree (the second panel toggle; the first belongs to
    # the navigation), then the navigation.
    tab.locator("button:has([aria-label='panel_show_right'])").nth(1).click()
    tab.get_by_role("button", name="Hide navigation").click()
    # The graph's options menu is the gear in the bottom-right toolbar.
    tab.locator("button:has([aria-label='settings'])").last.click()
    tab.get_by_role("menuitem", name="Expand all groups").click()
    tab.keyboard.press("Escape")
    tab.get_by_text("lte_drift_report", exact=True).first.wait_for()
    tab.wait_for_timeout(1000)  # the re-fit animates


@pytest.fixture(scope="session")
def chain() -> tuple[str, ...]:
    """Every asset of the pipeline, in order."""
    return CHAIN


@pytest.fixture(scope="session")
def asset_graph(servers):
    """Opens the expanded global asset graph in a given tab."""
    return lambda tab: open_asset_graph(tab, servers)


LOCATION = "orchestration.definitions"  # the code location name `-m orchestration.definitions` gives
RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status jobName } } }
"""
RUN_FAILURES = """
query Failures($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection {
  events { __typename ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } } } } } }
"""


@dataclass
class PipelineRun:
    run_id: str
    status: str
    seconds: float
    failures: list[str]


@pytest.fixture(scope="session")
def pipeline_run(servers, browser, shots) -> PipelineRun:
    """The `full_pipeline` job launched from its Launchpad in the UI, followed to its end (any status).

    The run config typed into the Launchpad picks the in-process executor, as `make demo` runs it:
    the default multiprocess executor starts one process per step (17 here), which on 2 cores
    adds more than a minute to the tiny pipeline without testing anything else of ours."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    tab = context.new_page()
    try:
        tab.goto(f"{servers.dagster}/locations/{LOCATION}/jobs/full_pipeline/playground")
        editor = tab.locator(".CodeMirror").first
        editor.wait_for()
        editor.click()
        tab.keyboard.press("Control+Home")
        tab.keyboard.insert_text("execution: {config: {in_process: {}}}\n")
        tab.get_by_text("No errors").first.wait_for()
        tab.screenshot(path=str(shots / "dagster_launchpad.png"))
        started = time.monotonic()
        tab.get_by_role("button", name="Launch Run").click()
        tab.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/([0-9a-f-]{36})", tab.url).group(1)
    finally:
        context.close()
    deadline = started + PIPELINE_RUN_S
    while True:
        run = servers.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", f"run {run_id} opened by the UI is not in the instance: {run}"
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {PIPELINE_RUN_S} s; "
                                 "daemon log:\n" + servers.log_tail("dagster-daemon"))
        time.sleep(2)
    failures = []
    if run["status"] != "SUCCESS":
        events = servers.graphql(RUN_FAILURES, {"runId": run_id})["logsForRun"].get("events", [])
        for event in events:
            if event["__typename"] == "ExecutionStepFailureEvent":
                cause = (event["error"].get("cause") or {}).get("message", "")
                failures.append(f"{event['stepKey']}: {event['error']['message'].strip()} {cause.strip()}")
    return PipelineRun(run_id=run_id, status=run["status"], seconds=time.monotonic() - started,
                       failures=failures)


@pytest.fixture(scope="session")
def materialized(pipeline_run) -> PipelineRun:
    """The pipeline run launched from the UI, required to have succeeded."""
    if pipeline_run.status != "SUCCESS":
        pytest.fail(f"the pipeline run launched from the Dagster UI ended {pipeline_run.status}: "
                    + "; ".join(pipeline_run.failures), pytrace=False)
    return pipeline_run
