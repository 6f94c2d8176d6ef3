"""Which MLflow tracking store a run writes to."""

from __future__ import annotations

import os

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(configured: str | None) -> str:
    """Config first, then $MLFLOW_TRACKING_URI, then MLflow 3's own default: ``mlflow.db`` in the
    working directory, beside Hydra's ``outputs/``."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
