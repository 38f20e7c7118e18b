"""Group commit: the threads of a process that each need a durable commit share one.

Why: every acknowledged instance needs its directory entry and its index row on stable storage,
and each of those is a sync (a directory fsync, a WAL fsync at ``synchronous=FULL``). With
several associations at once, the syncs queue up on the disk one behind the other. Here a thread
that needs a commit queues its item; if no commit is running, it becomes the *leader* at once
and commits everything queued (at first only its own item: a lone association never waits for
a batch window, there are no timers). While a leader commits, the threads that arrive wait;
when it is done, it wakes them, each finds its own outcome, and one of those still queued leads
the next round with all of them. So N waiting threads cost one round of syncs, not N.

Nothing is acknowledged early: :meth:`GroupCommit.submit` returns only after the round that
holds the item has finished, with the item's own outcome (or its round's exception).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "outcome")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.outcome: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Leader/follower batching of ``commit`` calls: ``commit(items)`` returns one outcome per
    item, in order, and is never run by two threads at once."""

    def __init__(
        self,
        commit: Callable[[list[T]], Sequence[R]],
        gate: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self._commit = commit
        # entered by a leader before it takes the queue, held during the round: a leader that
        # waits there (e.g. for another process's commit) takes all that queued meanwhile
        self._gate = gate or contextlib.nullcontext
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Slot[T, R]] = []
        self._leading = False
        self.rounds = 0  # statistics, for tests and benchmarks
        self.items = 0

    def submit(self, item: T) -> R:
        """Commit ``item`` (with whatever else is queued) and return its outcome."""
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
            while not slot.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.outcome  # type: ignore[return-value]

    def _lead(self) -> None:
        """Run one round with everything queued; called and returns with the lock held."""
        self._leading = True
        self._cond.release()
        batch: list[_Slot[T, R]] = []
        try:
            with self._gate():
                with self._cond:
                    batch, self._queue = self._queue, []
                outcomes = self._commit([slot.item for slot in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError("group commit: one outcome per item expected")
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome = outcome
        except BaseException as exc:  # the round failed: each of its waiters learns why
            if not batch:  # the gate failed: the queue, with the leader's own item, fails
                with self._cond:
                    batch, self._queue = self._queue, []
            for slot in batch:
                slot.error = exc
        finally:
            self._cond.acquire()
            self._leading = False
            self.rounds += 1
            self.items += len(batch)
            for slot in batch:
                slot.done = True
            self._cond.notify_all()
