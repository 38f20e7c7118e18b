"""Helper processes (the DIMSE workers, the DICOMweb metadata pool) end with the process that
started them, however it ended: a crash or ``kill -9`` runs no cleanup, and a worker left
behind keeps its memory, its share of the DICOM port, and accepts work nobody supervises."""

from __future__ import annotations

import os
import signal
import threading
import time


def end_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Call first thing in a child process: it gets SIGTERM once ``parent_pid`` is gone.

    Linux sends it at once (``PR_SET_PDEATHSIG``). That alone missed cases in the test suite
    (it follows the *thread* that started the child, and a parent may die before the child
    asks), so a thread also checks every ``interval`` seconds whether the parent changed."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watch thread alone

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def wait_for_termination(poll: float = 0.2) -> int:
    """Block until SIGTERM or SIGINT; returns the signal. The handler only appends to a list:
    one that takes a lock (``Event.set``) deadlocked when a second SIGTERM (the parent's and
    the parent-death one) interrupted the first inside it."""
    received: list[int] = []

    def handler(sig: int, _frame: object) -> None:
        received.append(sig)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not received:
        time.sleep(poll)
    return received[0]
