"""Ctrl-C and SIGTERM stop training cleanly (issue 24): the first signal asks the loop to stop
at its next step, keeping `last.pt` of the last whole epoch (a rerun resumes after it, no
epoch logged twice); a second SIGINT (or SIGTERM) aborts at once.

SIGTERM is what `timeout`, SLURM's preemption and `kill` send: it is handled like Ctrl-C.
SIGUSR2 is what SLURM sends a submitit job before its time limit (`--signal=USR2@…`);
submitit's handler then checkpoints the job, requeues it and exits. While training, that
signal is held like the others (the epoch in progress is dropped, last.pt kept, the run ended
as interrupted) and then handed back to submitit's handler (`hand_back`), so the requeued job
resumes after the last whole epoch (docs/cluster.md). Where nothing handles SIGUSR2, it is
left alone.
Handlers can only be installed from the main thread; elsewhere (a launcher's worker thread)
`GracefulStop` installs nothing and Python's defaults stay.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
REQUEUE_SIGNAL = signal.SIGUSR2  # submitit's: time limit near (or preempted), checkpoint and requeue
SCHEDULER_JOB_ENV = "SUBMITIT_EXECUTOR"  # set in every submitit job (slurm, local)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal at a step boundary; the run is resumable from last.pt.

    A KeyboardInterrupt: nothing that catches `Exception` (a sweep's cell wrapper) swallows it,
    so a sweep stops with its cell rather than going on to the next one."""

    def __init__(self, signum: int, epoch: int) -> None:
        self.signum = signum
        self.epoch = epoch  # 0-based epoch that was running; epochs before it are in last.pt
        super().__init__(f"{signal.Signals(signum).name} during epoch {epoch + 1}: stopped at a step "
                         f"boundary; last.pt holds the epochs before it")


class GracefulStop:
    """`with GracefulStop() as stop:` … `stop.check(epoch)` at every step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
            if callable(signal.getsignal(REQUEUE_SIGNAL)):  # a scheduler's handler waits for it
                self._previous[REQUEUE_SIGNAL] = signal.signal(REQUEUE_SIGNAL, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum != REQUEUE_SIGNAL:  # the second signal: abort now
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: aborted at once")
        self.signum = signum
        log.warning("%s: stopping at the next training step and keeping last.pt (send it again to abort now)",
                    signal.Signals(signum).name)

    def check(self, epoch: int) -> None:
        """Raise TrainingInterrupted when a signal came (call between steps)."""
        if self.signum is not None:
            raise TrainingInterrupted(self.signum, epoch)


def hand_back(stop: BaseException) -> None:
    """Raise `stop`'s signal again when it was the scheduler's requeue signal and a handler
    for it is installed (submitit's: it requeues the job and exits), now that the run is saved
    as interrupted; return (doing nothing) otherwise."""
    if getattr(stop, "signum", None) == REQUEUE_SIGNAL and callable(signal.getsignal(REQUEUE_SIGNAL)):
        signal.raise_signal(REQUEUE_SIGNAL)


def in_scheduler_job() -> bool:
    """Whether this process is a scheduler's job of its own (submitit: one cell per job), where
    a stopped cell ends only itself, not the sweep."""
    return SCHEDULER_JOB_ENV in os.environ
