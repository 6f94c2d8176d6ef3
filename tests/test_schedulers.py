import pytest
import torch

from vision_exp.optim import schedulers


def _lrs(scheduler_factory: object, steps: int, **kwargs: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = scheduler_factory(optimizer, epochs=10, steps_per_epoch=10, **kwargs)  # type: ignore[operator]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_warms_up_then_decays_to_the_floor() -> None:
    lrs = _lrs(schedulers.cosine, 100, warmup_epochs=1, min_lr_ratio=0.1)
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert max(lrs) == pytest.approx(1.0, abs=1e-3)
    assert lrs[50] < lrs[20]
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_onecycle_peaks_at_the_optimizer_lr() -> None:
    lrs = _lrs(schedulers.onecycle, 100, pct_start=0.25)
    assert max(lrs) == pytest.approx(1.0, abs=1e-3)
    assert lrs.index(max(lrs)) in range(20, 30)
    assert lrs[0] == pytest.approx(1.0 / 25.0)


def test_step_decays_every_n_epochs() -> None:
    lrs = _lrs(schedulers.step, 45, step_epochs=2, gamma=0.5)
    assert lrs[0] == lrs[19] == 1.0
    assert lrs[20] == 0.5 and lrs[40] == 0.25


def test_constant_keeps_the_lr() -> None:
    assert set(_lrs(schedulers.constant, 30)) == {1.0}


def test_plateau_cuts_when_the_metric_stalls() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = schedulers.plateau(optimizer, 10, 10, factor=0.5, patience=1, mode="max")
    for value in (0.5, 0.5, 0.5):
        scheduler.step(value)
    assert optimizer.param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize(("epochs", "steps"), [(1, 1), (1, 4), (2, 2), (1, 7)])
def test_onecycle_is_defined_for_the_shortest_runs(epochs: int, steps: int) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = schedulers.onecycle(optimizer, epochs=epochs, steps_per_epoch=steps)
    for _ in range(epochs * steps):
        optimizer.step()
        scheduler.step()
    assert 0 < optimizer.param_groups[0]["lr"] <= 1.0
