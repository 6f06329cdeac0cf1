"""Stop a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (``kill``, a job scheduler's end).

The signal only sets a flag; the loop checks it after each optimizer step, saves ``last.pt`` and
ends, so the run continues later with ``--resume`` from exactly that step. A second Ctrl-C
stops at once (the last saved checkpoint remains).
"""

from __future__ import annotations

import signal
import threading

import cv2


class StopRequest:
    """Context manager: while inside, SIGINT and SIGTERM set :attr:`signal_name` instead of
    killing the process (main thread only; elsewhere it does nothing)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name: str | None = None
        self._old: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: a worker ignores SIGINT and SIGTERM, so a signal sent to
    the whole process group (Ctrl-C in a terminal, a scheduler's ``kill``) reaches the run through
    the main process, which stops cleanly and shuts its workers down itself. It also draws with
    one OpenCV thread: the workers are the parallelism, and OpenCV's own pool (one thread per
    core in every worker) can oversubscribe a many-core machine (``python
    benchmarks/loader_speed.py`` compares both: 1.02-1.07x on a 2-core machine)."""
    for s in StopRequest.SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    cv2.setNumThreads(1)
