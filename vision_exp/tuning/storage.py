"""Where a study lives: any Optuna RDB URL, with relative SQLite paths pinned to one directory."""

from __future__ import annotations

from pathlib import Path

import optuna

_SQLITE = "sqlite:///"
# Several trial jobs report to one SQLite file at once; wait for the write lock instead of failing.
_SQLITE_TIMEOUT_S = 60


def absolute_storage_url(url: str, base_dir: Path) -> str:
    """``sqlite:///optuna.db`` -> ``sqlite:////<base_dir>/optuna.db``.

    The sweeper and its jobs (which may change directory, or run elsewhere under another launcher)
    must open the same file, and a resumed sweep must find it again.
    """
    if not url.startswith(_SQLITE) or url.startswith(_SQLITE + "/"):
        return url
    path, query_mark, query = url[len(_SQLITE) :].partition("?")
    if path in ("", ":memory:"):
        return url
    return f"{_SQLITE}{(base_dir / path).resolve()}{query_mark}{query}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    engine_kwargs = (
        {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    )
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
