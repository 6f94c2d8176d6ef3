"""Keep credentials out of everything a run writes: params, tags, artifacts and log lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# scheme://user:password@host -> scheme://user:***@host
_URI_PASSWORD = re.compile(
    r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]+:)(?P<secret>[^@\s]+)(?=@)"
)
# key=value pairs in query strings and connection strings (password=..., aws_secret_access_key=...)
_SECRET_NAMES = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key(?:[_-]?id)?"
    r"|secret[_-]?access[_-]?key)"
)
_QUERY_SECRET = re.compile(
    rf"(?P<prefix>(?i:[\w.\-]*{_SECRET_NAMES})\s*[=:]\s*)(?P<secret>[^&\s,;'\"]+)"
)
_SECRET_KEY = re.compile(rf"(?i:{_SECRET_NAMES})")


def redact_text(text: str) -> str:
    text = _URI_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: m.group("prefix") + REDACTED, text)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


def redact_value(key: str, value: Any) -> Any:
    if value is not None and is_secret_key(key):
        return REDACTED
    return redact_text(value) if isinstance(value, str) else value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys (``optimizer.lr``), lists kept as values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def redacted_params(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {key: redact_value(key, value) for key, value in flatten(tree).items()}
