"""Retries of the assets that call S3 or MLflow: three layers, innermost first.

1. boto3 (`lte.storage.with_retries` + botocore's own) and MLflow's HTTP client
   (`MlflowResource` sets MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR) retry one request.
2. `SERVICE_RETRY`: Dagster re-runs the whole step after 30 s, then 90 s (exponential, +/- jitter),
   for an outage longer than a request's retries.
3. `retry_transient_only`: a step that failed for any other reason (no champion yet, a refused
   basis, a bug) fails at once instead of being retried: Dagster's RetryPolicy retries every
   exception unless it is a `Failure(allow_retries=False)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import dagster as dg

from lte.storage import is_transient

SERVICE_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

# MLflow error codes that mean "the server is overloaded or away", not "your request is wrong".
_MLFLOW_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}


def is_service_outage(exc: BaseException) -> bool:
    """A failure of S3, MLflow or the DuckDB writer lock that a later attempt can get past; the
    exception's causes count too (MLflow wraps the requests error it gave up on)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if is_transient(exc) or type(exc).__name__ == "StoreBusyError":
            return True
        if getattr(exc, "error_code", None) in _MLFLOW_TRANSIENT_CODES or "Max retries exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_transient_only(fn: Callable) -> Callable:
    """Wrap an asset/op body so that only service outages are left to its RetryPolicy."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except dg.Failure:
            raise
        except Exception as exc:
            if is_service_outage(exc):
                raise
            raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc

    return wrapper
