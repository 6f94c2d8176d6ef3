"""A mutex kept in the registry store itself, so promotions from any machine take turns.

MLflow's alias update is last-writer-wins and offers no compare-and-set, so two promotions that
read the old holder at the same moment would both archive it and both record it as their
predecessor. The one atomic primitive every MLflow store (sqlite, PostgreSQL, a REST server in front
of either) gives is the unique name of a registered model: creating ``<model>.lock.<alias>``
succeeds for exactly one caller. The lock is short-lived (one promotion) and carries its owner in a
tag; one older than ``stale_after`` seconds is from a crashed process and is broken.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from vision_exp.errors import RegistryError

log = logging.getLogger(__name__)

LOCK_TAG = "vision_exp.lock_owner"
# Creating a name that exists answers "already exists"; if the holder released it between the
# failed insert and the store's follow-up read, the store answers "does not exist": both mean busy.
_BUSY = {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"}


def lock_name(model: str, alias: str) -> str:
    return f"{model}.lock.{alias}"


def _owner_and_age(client: MlflowClient, name: str) -> tuple[str | None, float] | None:
    try:
        held = client.get_registered_model(name)
    except MlflowException:
        return None
    age = time.time() - (held.creation_timestamp or 0) / 1000
    return held.tags.get(LOCK_TAG), age


def _release(client: MlflowClient, name: str, owner: str) -> None:
    """Delete the lock only while it is still ours (a peer may have broken it as stale)."""
    held = _owner_and_age(client, name)
    if held is not None and held[0] == owner:
        try:
            client.delete_registered_model(name)
        except MlflowException as error:
            log.warning("Could not release registry lock %s: %s", name, error)


@contextmanager
def registry_lock(
    client: MlflowClient,
    model: str,
    alias: str,
    timeout: float = 60.0,
    stale_after: float = 300.0,
) -> Iterator[None]:
    """Hold ``model@alias`` exclusively; wait up to ``timeout`` seconds for another holder."""
    name = lock_name(model, alias)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(
                name,
                tags={LOCK_TAG: owner},
                description=f"Lock held by vision_exp while promoting {model}@{alias}.",
            )
            break
        except MlflowException as error:
            if error.error_code not in _BUSY:
                raise
        held = _owner_and_age(client, name)
        if held is not None and held[1] > stale_after:
            log.warning("Breaking registry lock %s left by %s %.0f s ago", name, held[0], held[1])
            _release(client, name, str(held[0]))
            continue
        if time.monotonic() > deadline:
            holder = held[0] if held is not None else "another process"
            raise RegistryError(
                f"Another promotion of {model}@{alias} is in progress (lock {name!r} held by "
                f"{holder}); waited {timeout:.0f} s. Retry later; a lock left by a crashed "
                f"process is broken after {stale_after:.0f} s."
            )
        time.sleep(random.uniform(0.02, 0.1))
    try:
        yield
    finally:
        _release(client, name, owner)
