"""What the ranks of one torchrun launch must agree on before Hydra creates their output folder.

These run while Hydra resolves ``hydra.run.dir`` and ``hydra.output_subdir``, before any process
group exists, so they read torchrun's environment rather than ``torch.distributed``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import torch.distributed as dist

# The key under which the ranks of one torchrun launch agree on the time it started.
_LAUNCH_TIME_KEY = "vision_exp/launch_time"


@cache
def launch_time() -> datetime:
    """The instant this launch started, the same on every rank of a torchrun job.

    Each rank resolving ``${now:}`` on its own can straddle a second and split one job into several
    output folders. torchrun's agent runs a key-value store every worker can reach
    (``TORCHELASTIC_USE_AGENT_STORE``): the first rank to ask writes its clock there, the others
    read it. Elsewhere this is the local clock.
    """
    now = datetime.now()
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return now
    store = dist.TCPStore(  # type: ignore[attr-defined]
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timedelta(seconds=60),
    )
    agreed: bytes = store.compare_set(_LAUNCH_TIME_KEY, "", now.isoformat())
    return datetime.fromisoformat(agreed.decode())


def main_process_only(value: Any) -> Any:
    """``value`` on rank 0, None elsewhere: ``hydra.output_subdir``, so rank 0 alone writes it."""
    return value if os.environ.get("RANK", "0") == "0" else None
