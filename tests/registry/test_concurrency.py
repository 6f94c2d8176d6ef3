"""Two processes promoting to the same alias at the same moment, several times over."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier

import pytest

from tests.registry.conftest import add_version
from vision_exp.registry import ModelRegistry
from vision_exp.registry.model_registry import lifecycle_tag

NAME = "vision-classifier"
ROUNDS = 3


def promote_in_rounds(uri: str, versions: list[str], barrier: Barrier) -> None:
    registry = ModelRegistry(uri, lock_timeout=60)
    for version in versions:
        barrier.wait(timeout=120)
        registry.promote(NAME, version, "production", f"round promotion of v{version}")


@pytest.mark.slow
def test_concurrent_promotions_take_turns(registry: ModelRegistry) -> None:
    for seed in range(1 + 2 * ROUNDS):
        add_version(registry, NAME, 0.5, seed)
    registry.promote(NAME, "1", "production")
    uri = registry.client.tracking_uri
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(
            target=promote_in_rounds,
            args=(uri, [str(2 + 2 * r + offset) for r in range(ROUNDS)], barrier),
        )
        for offset in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0]

    def tag(version: str, name: str) -> str | None:
        tags = registry.client.get_model_version(NAME, version).tags
        return tags.get(lifecycle_tag("production", name))

    # Serialised, each round hands the alias on twice: the round's second promotion names the
    # first as its predecessor, and the first names the previous round's winner. Racing
    # promotions would both name the previous winner and leave two versions "active".
    winner = "1"
    for r in range(ROUNDS):
        pair = {str(2 + 2 * r), str(3 + 2 * r)}
        second = next((v for v in pair if tag(v, "previous") in pair), None)
        assert second is not None, f"round {r}: both promotions replaced v{winner} (they raced)"
        (first,) = pair - {second}
        assert tag(second, "previous") == first
        assert tag(first, "previous") == winner
        winner = second
    holder = registry.holder(NAME, "production")
    assert holder is not None and str(holder.version) == winner
    states = {str(v): tag(str(v), "state") for v in range(1, 2 + 2 * ROUNDS)}
    assert [v for v, s in states.items() if s == "active"] == [winner]
    assert all(s == "archived" for v, s in states.items() if v != winner)
