"""Kubernetes wiring without a cluster: the instance and run-config YAML files, and the executor the
definitions pick from LTE_EXECUTOR (dagster-k8s is not part of the default install)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.definitions import defs
from orchestration.executors import EXECUTOR_ENV, executor_from_env

ROOT = Path(__file__).resolve().parents[1]
# The k8s_job_executor's config fields in dagster-k8s 0.29 (dagster_k8s/executor.py + job.py).
K8S_EXECUTOR_FIELDS = {
    "job_image", "image_pull_policy", "image_pull_secrets", "service_account_name", "env_config_maps",
    "env_secrets", "env_vars", "volume_mounts", "volumes", "labels", "resources", "scheduler_name",
    "security_context", "job_namespace", "retries", "max_concurrent", "tag_concurrency_limits",
    "step_k8s_config", "per_step_k8s_config",
}
K8S_STEP_CONFIG_FIELDS = {"container_config", "pod_template_spec_metadata", "pod_spec_config", "job_config",
                          "job_metadata", "job_spec_config"}


def test_run_config_configures_the_k8s_executor_for_real_steps_and_valid_resources():
    run_config = yaml.safe_load((ROOT / "infra/k8s/run-config.yaml").read_text())
    executor = run_config["execution"]["config"]
    assert set(executor) <= K8S_EXECUTOR_FIELDS
    job = defs.resolve_job_def("full_pipeline")
    steps = {node.name for node in job.graph.node_defs}
    per_step = executor["per_step_k8s_config"]
    assert per_step and set(per_step) <= steps, f"not steps of full_pipeline: {set(per_step) - steps}"
    for config in [executor["step_k8s_config"], *per_step.values()]:
        assert set(config) <= K8S_STEP_CONFIG_FIELDS
    # The resources part is checked against this repository's own run-config schema.
    dg.validate_run_config(job, {"resources": run_config["resources"]})
    assert run_config["resources"]["artifact_store"]["config"]["uri"].startswith("s3://")


def test_k8s_instance_launches_runs_as_jobs_that_choose_the_k8s_executor():
    instance = yaml.safe_load((ROOT / "infra/dagster-k8s.yaml").read_text())
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s.launcher", "K8sRunLauncher")
    assert f"{EXECUTOR_ENV}=k8s" in launcher["config"]["env_vars"]
    assert instance["run_coordinator"]["config"]["max_concurrent_runs"] == 1  # one DuckDB writer
    assert instance["telemetry"]["enabled"] is False
    values = yaml.safe_load((ROOT / "infra/k8s/values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["env"][EXECUTOR_ENV] == "k8s"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_executor_from_env():
    assert executor_from_env({}) is dg.multi_or_in_process_executor  # Dagster's own default
    assert executor_from_env({EXECUTOR_ENV: "multiprocess"}) is dg.multiprocess_executor
    assert executor_from_env({EXECUTOR_ENV: "in_process"}) is dg.in_process_executor
    with pytest.raises(ValueError, match="multiprocess, in_process or k8s"):
        executor_from_env({EXECUTOR_ENV: "celery"})
    if not os.environ.get(EXECUTOR_ENV):
        assert defs.resolve_job_def("full_pipeline").executor_def is dg.multi_or_in_process_executor
        assert defs.resolve_job_def("refresh_lte_sharded").executor_def is dg.multiprocess_executor


def _load_definitions(env: dict, pythonpath: str = "") -> subprocess.CompletedProcess:
    code = ("from orchestration.definitions import defs\n"
            "print(*(defs.resolve_job_def(j).executor_def.name for j in ('full_pipeline', 'refresh_lte_sharded')))")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)},
    )


def test_k8s_without_dagster_k8s_fails_at_load_time_saying_what_to_install():
    try:
        import dagster_k8s  # noqa: F401
        pytest.skip("dagster-k8s is installed here")
    except ImportError:
        pass
    loaded = _load_definitions({EXECUTOR_ENV: "k8s"})
    assert loaded.returncode != 0
    assert "needs the dagster-k8s package" in loaded.stderr and "pip install dagster-k8s==" in loaded.stderr


def test_k8s_with_dagster_k8s_puts_every_job_on_its_executor(tmp_path):
    """A stand-in `dagster_k8s` module (the real one needs a cluster to do anything)."""
    package = tmp_path / "dagster_k8s"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import dagster as dg\n\n"
        "@dg.executor(name='k8s')\n"
        "def k8s_job_executor(init_context):\n"
        "    raise NotImplementedError\n"
    )
    loaded = _load_definitions({EXECUTOR_ENV: "k8s"}, pythonpath=str(tmp_path))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "k8s k8s"
