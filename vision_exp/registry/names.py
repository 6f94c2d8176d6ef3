"""What the registry accepts as a model name, a version reference and a role (alias).

Checked here, without importing MLflow, so that config validation and the CLI can reject a bad name
in one clear sentence before any store is contacted.
"""

from __future__ import annotations

import re

from vision_exp.errors import RegistryError

# MLflow's own alias rules: word characters and dashes; `latest` and `v<N>` already mean something
# in `models:/NAME@ALIAS` URIs, so MLflow refuses them.
_ALIAS = re.compile(r"^[\w\-]{1,255}$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_VERSION = re.compile(r"^[vV]?(\d+)$")
ALIAS_RULE = "letters, digits, '_' or '-'; not 'latest' or 'v<number>', which MLflow reserves"
MODEL_NAME_RULE = "a non-empty name without '/' or ':'"


def alias_problem(alias: object) -> str | None:
    """Why ``alias`` cannot name a role, or None when it can."""
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        return f"{alias!r} is not a valid alias (use {ALIAS_RULE})"
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        return (
            f"alias {alias!r} is reserved by MLflow (models:/NAME@{alias} already names a "
            "version); use a role name such as staging or production"
        )
    return None


def is_valid_alias(alias: object) -> bool:
    return alias_problem(alias) is None


def is_valid_model_name(name: object) -> bool:
    return isinstance(name, str) and bool(name.strip()) and not set(name) & {"/", ":"}


def check_alias(alias: str) -> str:
    problem = alias_problem(alias)
    if problem is not None:
        raise RegistryError(problem[0].upper() + problem[1:] + ".")
    return alias


def check_model_name(name: str) -> str:
    if not is_valid_model_name(name):
        raise RegistryError(f"Model name {name!r} is not valid (use {MODEL_NAME_RULE}).")
    return name


def parse_version(ref: str) -> str:
    """``3`` or ``v3`` -> ``"3"``."""
    match = _VERSION.match(ref.strip())
    if match is None or int(match.group(1)) < 1:
        raise RegistryError(
            f"Version {ref!r} is not a version number (use 1, 2, ... or v1, v2, ...; "
            "'@ALIAS' where an alias is allowed)."
        )
    return str(int(match.group(1)))
