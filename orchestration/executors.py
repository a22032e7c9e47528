"""Which executor runs the steps of a job, chosen by the LTE_EXECUTOR environment variable when the
definitions load (the code server's environment, e.g. the Helm chart's user-code deployment):

- unset: Dagster's default, `multi_or_in_process_executor` (a process per step; run config
  `execution: {config: {in_process: {}}}` keeps a run in one process); the sharded refresh job
  asks for `multiprocess` explicitly, so its shards always run in parallel;
- `multiprocess`: every step in its own process on the run's machine;
- `in_process`: every step in the run's process (debugging);
- `k8s`: every step in its own Kubernetes Job/pod (`dagster_k8s.k8s_job_executor`), configured
  by the run config in infra/k8s/run-config.yaml. Needs the dagster-k8s package, which the default
  install leaves out.

`make demo` runs in process whatever this says (`execute_in_process`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTOR_ENV = "LTE_EXECUTOR"
DAGSTER_K8S_PIN = "dagster-k8s==0.29.28"  # the companion release of dagster 1.13.28


def executor_from_env(
    env: Mapping[str, str] | None = None, default: dg.ExecutorDefinition = dg.multi_or_in_process_executor
) -> dg.ExecutorDefinition:
    """The executor LTE_EXECUTOR names, or `default` when it is unset or empty."""
    name = (os.environ if env is None else env).get(EXECUTOR_ENV, "").strip()
    if not name:
        return default
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise RuntimeError(
                f"{EXECUTOR_ENV}=k8s needs the dagster-k8s package, which is not installed here: add "
                f"`pip install {DAGSTER_K8S_PIN}` to the image (infra/README.md, Kubernetes), or unset "
                f"{EXECUTOR_ENV} to run steps as local processes"
            ) from exc
        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={name!r} is not an executor; use multiprocess, in_process or k8s")
