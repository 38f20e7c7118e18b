"""The async face of the render workers: one awaitable per kind of job, failures as one error.

The event loop never renders, builds, encodes or waits on a pipe: :meth:`RenderBridge.run`
puts the job on the queue of the worker that owns the series (sticky, see :mod:`.workers`) and
awaits a future that the worker's I/O thread settles. Cancelling the awaiting task (a client
that went away) drops a job that has not started.

The worker processes start with the first render request, not with the app: most processes
that build the app (tests, ``consilium dicom``) never render.

Every failure reaches the caller as :class:`RenderFailure` with an HTTP status:

* 422 -- the library refused the series or the request (its message, and a reason code such as
  ``single-slice``, ``not-image``, ``mixed-size``, ``plane``, ``render``, ``isosurface``);
* 503 -- the worker crashed or was killed during the job (it is being restarted), all workers
  are busy (a bounded backlog), the service is stopping, or memory ran out;
* 500 -- a bug (logged in the worker).
"""

from __future__ import annotations

import threading
from typing import TypeVar

from consilium.errors import DomainError, Unavailable
from consilium.render.protocol import (
    Failure,
    FrameResult,
    InfoResult,
    InfoSpec,
    IsosurfaceSpec,
    Job,
    MprSpec,
    Result,
    RoiStatsSpec,
    SeriesSource,
    Spec,
    StatsResult,
    SurfaceResult,
    VolumeSpec,
)
from consilium.render.worker_process import DEFAULT_MAX_FRAME_PIXELS
from consilium.render.workers import (
    PoolBusy,
    PoolClosed,
    RenderPool,
    WorkerCrashed,
    WorkerStats,
)

R = TypeVar("R", InfoResult, FrameResult, SurfaceResult, StatsResult)


class RenderFailure(DomainError):
    """A render request that could not be answered with an image: the status is the
    worker's (or the bridge's), a 503 asks to retry after a second."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message, reason=reason,
                         headers=Unavailable.headers if status == 503 else None)
        self.status = status


class RenderBridge:
    """Jobs to the worker pool, results back as awaitables."""

    def __init__(self, workers: int, cache_mb: int, log_level: str = "INFO",
                 max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> None:
        self.workers = workers
        self.cache_mb = cache_mb
        self.log_level = log_level
        self.max_frame_pixels = max_frame_pixels
        self._pool: RenderPool | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> RenderPool:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = RenderPool(self.workers, self.cache_mb, self.log_level,
                                            self.max_frame_pixels)
        return self._pool

    @property
    def started(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        """Start the worker processes now (they otherwise start with the first request)."""
        _ = self.pool

    def stats(self) -> list[WorkerStats]:
        return self.pool.stats() if self._pool is not None else []

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    async def run(self, source: SeriesSource, spec: Spec, background: bool = False) -> Result:
        try:
            result = await self.pool.run(Job(source, spec, background))
        except WorkerCrashed as exc:
            raise RenderFailure(503, f"the render worker stopped during this request ({exc}); "
                                "it is being restarted, try again", "worker-restarted") from exc
        except PoolBusy as exc:
            raise RenderFailure(503, "the render service is busy; try again shortly",
                                "busy") from exc
        except PoolClosed as exc:
            raise RenderFailure(503, "the render service is stopping", "stopping") from exc
        if isinstance(result, Failure):
            raise RenderFailure(result.status, result.message, result.reason)
        return result

    async def _expect(self, source: SeriesSource, spec: Spec, kind: type[R],
                      background: bool = False) -> R:
        result = await self.run(source, spec, background)
        if not isinstance(result, kind):
            raise RenderFailure(500, f"the worker answered {type(result).__name__} to "
                                f"{type(spec).__name__}")
        return result

    async def info(self, source: SeriesSource, background: bool = False) -> InfoResult:
        return await self._expect(source, InfoSpec(), InfoResult, background)

    async def mpr(self, source: SeriesSource, spec: MprSpec, background: bool = False
                  ) -> FrameResult:
        return await self._expect(source, spec, FrameResult, background)

    async def volume(self, source: SeriesSource, spec: VolumeSpec, background: bool = False
                     ) -> FrameResult:
        return await self._expect(source, spec, FrameResult, background)

    async def isosurface(self, source: SeriesSource, spec: IsosurfaceSpec) -> SurfaceResult:
        return await self._expect(source, spec, SurfaceResult)

    async def roi_stats(self, source: SeriesSource, spec: RoiStatsSpec) -> StatsResult:
        return await self._expect(source, spec, StatsResult)
