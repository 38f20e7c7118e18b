"""The pool of render worker processes, from the web process's side: starting them, routing
jobs to them, crash recovery. What a worker does with its jobs, and its volume cache with its
memory bound: :mod:`.worker_process`.

Processes
    ``render_workers`` processes started with multiprocessing's *spawn* context (VTK and its
    GL context must not be forked from a threaded web server). Each is named ``render-<n>``
    (``/proc/<pid>/comm``, what ``ps``/``top`` show) and runs one job at a time from a duplex
    pipe. The web process never imports VTK: jobs and results are the plain dataclasses of
    :mod:`.protocol`.

Sticky routing
    A series always goes to the same worker: rendezvous hashing of the Series Instance UID over
    the worker indexes (stable across restarts of a worker and across web processes). So the
    one volume of a series is built once and stays warm where its next frames are rendered.

Crashes
    One I/O thread per worker in the web process sends jobs and waits for results (the event
    loop only enqueues; see :mod:`.bridge`). When the process dies (segfault in VTK, out of
    memory, ``kill -9``) or a job exceeds :data:`JOB_TIMEOUT_SECONDS` (the process is then
    killed), the job in flight fails with :class:`WorkerCrashed` (HTTP 503) and a new process
    is started at once; queued jobs go to the new process. A worker found dead while idle is
    replaced too. A process dying as it starts backs off up to :data:`MAX_RESTART_DELAY`
    seconds; a series that was being rendered in :data:`MAX_CRASHES_PER_SERIES` crashes is
    refused from then on.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import itertools
import logging
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import TYPE_CHECKING

from consilium.render.protocol import (
    Failure,
    IsosurfaceSpec,
    Job,
    Result,
    VolumeSpec,
)
from consilium.render.worker_process import DEFAULT_MAX_FRAME_PIXELS, MB, worker_main

if TYPE_CHECKING:  # the web process never imports VTK; the worker imports it at start
    pass

log = logging.getLogger(__name__)

JOB_TIMEOUT_SECONDS = 180.0
MAX_BACKLOG = 64
"""Jobs waiting for one worker beyond which new ones are refused (503): never an unbounded
queue. Interactive streams hold at most one job each (see :mod:`.events`)."""
MAX_RESTART_DELAY = 10.0
MAX_CRASHES_PER_SERIES = 3
"""A series whose jobs killed the worker this often is refused (500) from then on: one poisoned
series must not keep the workers of everyone else restarting."""


class WorkerCrashed(Exception):
    """The worker process died (or was killed after a timeout) while running the job."""


class PoolBusy(Exception):
    """The worker of this series has :data:`MAX_BACKLOG` jobs waiting already."""


class PoolClosed(Exception):
    """The pool is shutting down."""


# =========================================================================== the web side


@dataclass(eq=False)
class Pending:
    """A job on its way to a worker and the future its result settles."""

    job: Job
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Result]
    abandoned: bool = False
    """Set when the awaiting request went away: the job is then skipped, not rendered."""


def _settle(future: asyncio.Future[Result], value: Result | BaseException) -> None:
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def _slow(job: Job) -> bool:
    """A job that may take seconds: a full-quality 3-D frame (the first one of a volume
    computes its gradients) or an isosurface."""
    spec = job.spec
    return isinstance(spec, IsosurfaceSpec) or (
        isinstance(spec, VolumeSpec) and spec.quality == "final" and not spec.preview)


def rank(job: Job) -> int:
    """Where ``job`` queues (lower first, see :class:`JobQueue`): 1 information, MPR and
    interactive frames; 2 a 3-D stream's first frame (a coarse preview, a few hundred ms when
    the coarse copy is cold); 3 slow jobs (:func:`_slow`); 4 background work."""
    if job.background:
        return 4
    if _slow(job):
        return 3
    return 2 if isinstance(job.spec, VolumeSpec) and job.spec.preview else 1


class JobQueue:
    """The jobs waiting for one worker, by :func:`rank`, in order of arrival within each rank.

    The panes of a layout subscribe together. A 3-D stream's full frame, asked for right after
    its preview, must not hold an MPR pane's first frame back for the seconds of its gradients
    (seen: 14 s to the four panes instead of 4); nor should the preview, whose coarse copy
    takes 0.3-1 s to make and ray-cast the first time, hold back MPR frames of a few ms each
    (seen: the coronal and sagittal panes 1.1 s after the axial one, behind the preview).
    Preparing a volume nobody has asked for yet (:mod:`.prepare`) waits for everything else.
    The close marker goes first. A job already running is never interrupted."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Pending | None]] = queue.PriorityQueue()
        self._order = itertools.count()

    def put(self, pending: Pending | None) -> None:
        place = 0 if pending is None else rank(pending.job)
        self._queue.put((place, next(self._order), pending))

    def get(self, timeout: float | None = None) -> Pending | None:
        return self._queue.get(timeout=timeout)[2]

    def get_nowait(self) -> Pending | None:
        return self._queue.get_nowait()[2]

    def qsize(self) -> int:
        return self._queue.qsize()


@dataclass
class WorkerStats:
    index: int
    pid: int | None
    alive: bool
    restarts: int
    backlog: int
    jobs: int


@dataclass(eq=False)
class WorkerHandle:
    """One worker process and the I/O thread that feeds it, restarting it when it dies."""

    index: int
    budget_bytes: int
    log_level: str
    context: SpawnContext
    max_frame_pixels: int = 0  # 0: DEFAULT_MAX_FRAME_PIXELS
    restarts: int = 0
    jobs: int = 0
    _queue: JobQueue = field(default_factory=JobQueue)
    _process: SpawnProcess | None = None
    _conn: Connection | None = None
    _closing: bool = False
    _started_at: float = 0.0
    _thread: threading.Thread | None = None
    _crashes: dict[str, int] = field(default_factory=dict)
    """Series UID -> jobs of it during which the process died."""

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._serve, name=f"render-{self.index}-io",
                                        daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stats(self) -> WorkerStats:
        process = self._process
        return WorkerStats(self.index, self.pid, bool(process and process.is_alive()),
                           self.restarts, self._queue.qsize(), self.jobs)

    def submit(self, pending: Pending) -> None:
        if self._closing:
            raise PoolClosed("the render service is shutting down")
        if self._queue.qsize() >= MAX_BACKLOG:
            raise PoolBusy(f"render worker {self.index} has {MAX_BACKLOG} jobs waiting")
        self._queue.put(pending)

    def begin_close(self) -> None:
        """No restarts from now on (the processes are about to be stopped)."""
        self._closing = True

    def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._stop_process(timeout)

    # -- the I/O thread --------------------------------------------------------------------

    def _spawn(self) -> None:
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker_main, args=(self.index, child, self.budget_bytes, self.log_level,
                                      self.max_frame_pixels or DEFAULT_MAX_FRAME_PIXELS),
            name=f"render-{self.index}", daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self._started_at = time.monotonic()
        log.info("render worker %d started (pid %s)", self.index, process.pid)

    def _stop_process(self, timeout: float) -> None:
        process, conn = self._process, self._conn
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)
        if conn is not None:
            conn.close()
        self._conn = None

    def _restart(self, why: str) -> None:
        if self._closing:
            return
        process = self._process
        lived = time.monotonic() - self._started_at
        log.error("render worker %d (pid %s) %s; restarting it", self.index,
                  process.pid if process else None, why)
        if process is not None and process.is_alive():
            process.kill()
        if process is not None:
            process.join(5.0)
        if self._conn is not None:
            self._conn.close()
        self.restarts += 1
        if lived < 1.0:  # dying as soon as it starts, again and again: do not spin
            time.sleep(min(MAX_RESTART_DELAY, 0.5 * 2 ** min(self.restarts, 5)))
        self._spawn()

    def _alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _serve(self) -> None:
        while True:
            try:
                pending = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._closing and not self._alive():
                    self._restart(f"exited while idle (code {self._exitcode()})")
                continue
            if pending is None:
                break
            if pending.abandoned:
                continue
            series = pending.job.source.series_uid
            if self._crashes.get(series, 0) >= MAX_CRASHES_PER_SERIES:
                self._answer(pending, Failure(
                    500, f"this series stopped the render worker {MAX_CRASHES_PER_SERIES} times;"
                    " it is not rendered again until the server restarts", "crashes"))
                continue
            if not self._alive():
                self._restart(f"exited while idle (code {self._exitcode()})")
            try:
                self._answer(pending, self._exchange(pending.job))
                self.jobs += 1
            except WorkerCrashed as exc:
                self._answer(pending, exc)  # at once: the restart takes a moment
                self._crashes[series] = self._crashes.get(series, 0) + 1
                self._restart(f"{exc} (series {series})")
        # closing: whoever still waits is told so
        while True:
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                with contextlib.suppress(RuntimeError):
                    left.loop.call_soon_threadsafe(_settle, left.future,
                                                   PoolClosed("the render service stopped"))

    @staticmethod
    def _answer(pending: Pending, value: Result | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            pending.loop.call_soon_threadsafe(_settle, pending.future, value)

    def _exitcode(self) -> int | None:
        return self._process.exitcode if self._process is not None else None

    def _exchange(self, job: Job) -> Result:
        conn, process = self._conn, self._process
        assert conn is not None and process is not None
        try:
            conn.send(job)
        except (OSError, ValueError) as exc:
            raise WorkerCrashed(f"could not take the job ({exc})") from exc
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while not conn.poll(0.25):
            if not process.is_alive():
                raise WorkerCrashed(f"exited with code {process.exitcode} during a job")
            if time.monotonic() > deadline:
                process.kill()
                raise WorkerCrashed(f"took more than {JOB_TIMEOUT_SECONDS:.0f} s and was killed")
        try:
            result: Result = conn.recv()
        except (EOFError, OSError) as exc:
            process.join(1.0)
            raise WorkerCrashed(f"exited with code {process.exitcode} during a job") from exc
        return result


def rendezvous(key: str, count: int) -> int:
    """The worker index for ``key``: highest random weight hashing (stable, evenly spread)."""
    def weight(index: int) -> bytes:
        return hashlib.blake2b(f"{index}:{key}".encode(), digest_size=8).digest()

    return max(range(count), key=weight)


class RenderPool:
    """``workers`` render processes sharing ``cache_mb`` of volume cache, sticky by series."""

    def __init__(self, workers: int, cache_mb: int, log_level: str = "INFO",
                 max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> None:
        if workers < 1:
            raise ValueError("at least one render worker is needed")
        self.budget_bytes = max(1, cache_mb) * MB // workers
        context = multiprocessing.get_context("spawn")
        self.handles = [WorkerHandle(i, self.budget_bytes, log_level, context, max_frame_pixels)
                        for i in range(workers)]
        self._closed = False
        atexit.register(self.close)  # before multiprocessing's own exit handler terminates
        for handle in self.handles:  # the workers: no restarts while the interpreter exits
            handle.start()

    def worker_for(self, series_uid: str) -> int:
        return rendezvous(series_uid, len(self.handles))

    async def run(self, job: Job) -> Result:
        """The result of ``job`` from the worker of its series. Raises :class:`WorkerCrashed`,
        :class:`PoolBusy` or :class:`PoolClosed`; cancelling the caller skips a job that has
        not started yet."""
        if self._closed:
            raise PoolClosed("the render service is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        pending = Pending(job, loop, future)
        self.handles[self.worker_for(job.source.series_uid)].submit(pending)
        try:
            return await future
        except asyncio.CancelledError:
            pending.abandoned = True
            raise

    def stats(self) -> list[WorkerStats]:
        return [handle.stats() for handle in self.handles]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for handle in self.handles:
            handle.begin_close()
        for handle in self.handles:
            handle.close()

