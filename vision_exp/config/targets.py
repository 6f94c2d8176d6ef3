"""``instantiate`` restricted to code this project trusts.

A config's ``_target_`` can name any callable, so a config from elsewhere (a replayed run, a shared
preset) could execute arbitrary code; Hydra 1.4 lets the call site whitelist targets. Add your own
packages with ``VISION_EXP_TRUSTED_TARGETS=my_models.*,other.module.fn``.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.utils import instantiate

TRUSTED_TARGETS = ("vision_exp.*", "torch.*", "torchvision.*")


def trusted_targets() -> list[str]:
    extra = os.environ.get("VISION_EXP_TRUSTED_TARGETS", "")
    return [*TRUSTED_TARGETS, *(t.strip() for t in extra.split(",") if t.strip())]


def build(config: Any, *args: Any, **kwargs: Any) -> Any:
    return instantiate(config, *args, _execution_whitelist_=trusted_targets(), **kwargs)
