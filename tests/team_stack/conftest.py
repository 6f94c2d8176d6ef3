from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.team_stack.services import Stack, missing_tools, team_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """PostgreSQL + SeaweedFS S3 + mlflow server for the whole session, stopped at its end."""
    missing = missing_tools()
    if missing:
        reason = f"team stack needs {', '.join(missing)}; .ci/run installs them"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with team_stack() as started:
        yield started
