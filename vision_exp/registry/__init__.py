"""The model registry: versions, roles (aliases) with their history, and the post-training policy.

``ModelRegistry`` is the API, ``python -m vision_exp.registry`` the CLI, and the ``registry`` config
group decides what training does with its model (see docs/model_registry.md).
"""

from vision_exp.registry.model_registry import ModelRegistry, Promotion, VersionSummary

__all__ = ["ModelRegistry", "Promotion", "VersionSummary"]
