"""Find out in seconds, before any work, whether a remote tracking server answers.

MLflow retries a failed request 7 times with exponential back-off and waits up to 120 s for each
answer, so a typo'd host or a server that is down would otherwise stall a run for minutes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import mlflow

from vision_exp.errors import TrackingError
from vision_exp.tracking.redact import redact_text
from vision_exp.tracking.uri import DEFAULT_TRACKING_URI, resolve_tracking_uri

PROBE_TIMEOUT_S = 5
_REMOTE_SCHEMES = ("http", "https")


@contextmanager
def _fail_fast_requests(timeout_s: int) -> Iterator[None]:
    """One try, a short timeout: MLflow reads these variables on every request."""
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
    }
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _root_cause(error: BaseException) -> str:
    """``ConnectionRefusedError: ...`` rather than MLflow's and urllib3's wrappers around it."""
    while (cause := error.__cause__ or error.__context__) is not None:
        error = cause
    return f"{type(error).__name__}: {error}"


def check_tracking_server(configured: str | None, timeout_s: int = PROBE_TIMEOUT_S) -> None:
    """Raise ``TrackingError`` naming the (redacted) URI when a remote server does not answer.

    Local stores (sqlite, file) are created on first use and need no check.
    """
    uri = resolve_tracking_uri(configured)
    if urlparse(uri).scheme not in _REMOTE_SCHEMES:
        return
    with _fail_fast_requests(timeout_s):
        try:
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
        except Exception as error:
            origin = "mlflow.tracking_uri" if configured else "$MLFLOW_TRACKING_URI"
            reason = redact_text(_root_cause(error)).splitlines()[0][:200]
            raise TrackingError(
                f"The MLflow tracking server {redact_text(uri)} (from {origin}) cannot be used "
                f"(one try, {timeout_s} s timeout): {reason}. Start the server or fix "
                f"the URI, or track locally instead: mlflow.tracking_uri={DEFAULT_TRACKING_URI}"
                + (" or unset MLFLOW_TRACKING_URI." if not configured else ".")
            ) from error
