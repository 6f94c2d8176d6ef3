"""SIGINT/SIGTERM during training: stop at the next step boundary, or at once on a second signal.

The first signal only records a request; the training loop honours it between optimizer steps, so
no step is half-applied and the last checkpoint (written atomically after every epoch) stays the
state to resume from. A second signal raises straight away for a user who cannot wait. Signals are
process-wide, so the request is module state rather than something threaded through every call.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from vision_exp.errors import RunInterrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: list[int] = []
# Set once ``check_interrupt`` has raised for the request: the run stopped for it, so the end of
# ``interrupt_handling`` need not.
_honoured: list[bool] = []


def stop_requested() -> int | None:
    """The signal number of a pending stop request, if any (for a DDP all-reduce, say)."""
    return _requested[0] if _requested else None


def _alone(flag: bool) -> bool:
    return flag


def check_interrupt(agree: Callable[[bool], bool] = _alone) -> None:
    """Raise ``RunInterrupted`` if a signal asked the run to stop; called between steps.

    Under DDP ``agree`` is a collective "any rank?": every rank stops at the same step, so none is
    left waiting in an all-reduce for a rank that has already stopped.
    """
    signum = stop_requested()
    if agree(signum is not None):
        signum = signum or signal.SIGTERM
        _honoured.append(True)
        raise RunInterrupted(f"Stopped by {signal.Signals(signum).name}.", signum)


def _handle(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _requested:
        # A third signal gets the default behaviour: the process dies without cleaning up.
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        raise RunInterrupted(f"Stopped at once by a second signal ({name}).", signum)
    _requested.append(signum)
    log.warning(
        "%s received: stopping after the current step (send it again to stop at once).", name
    )


@contextmanager
def interrupt_handling() -> Iterator[None]:
    """Install the handlers for the duration of a run and put the previous ones back after.

    A signal that comes after the last step (during the test evaluation, the report, the model
    upload) lets the run finish, then raises here: the user asked the process to stop, and a sweep
    must not start its next trial. Python delivers signals to the main thread only, so elsewhere (a
    launcher's worker thread) the process keeps its own handling and nothing is installed.
    """
    _requested.clear()
    _honoured.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pending = None if _honoured else stop_requested()
        _requested.clear()
        _honoured.clear()
    if pending is not None:
        raise RunInterrupted(
            f"{signal.Signals(pending).name} came as the run was finishing: it finished (its "
            "MLflow run ended FINISHED), and the process stops here.",
            pending,
        )
