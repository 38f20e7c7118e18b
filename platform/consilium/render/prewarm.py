"""Preparing volumes before anyone asks for a frame of them: a live session that opens, or is
about to (:func:`prewarm`), and a viewer that has just shown a series' first image
(:mod:`.prepare`).

A cold first 3-D frame costs the volume's build (reading and stacking the slices) plus the ray
caster's first frame, which computes the gradients of every voxel: 2.4-4.8 s for a 300-slice CT
on 2 cores, measured. Both are kept by the worker that owns the series (:mod:`.workers`), for
every later frame of any preset. So warming is: the volume's information (the build), one tiny
MPR (the reslicer) and one tiny 3-D frame, in the worker the series sticks to. The 3-D frame is
a final one of the full volume (its gradients: a live session, whose presenter rotates at once)
or a preview (the coarse copy's ray caster, 0.3-1 s, what a viewer's 3-D pane shows first; the
full gradients are left to the pane, seconds of a core the slices still loading also want).
A series the library refuses (a single image, a report) is simply not warm.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from consilium.render.access import RenderAccess
from consilium.render.bridge import RenderBridge, RenderFailure
from consilium.render.protocol import MprSpec, SeriesSource, VolumeSpec


class RenderService(Protocol):
    """What warming needs of the render service (:class:`.service.RenderService`, which holds
    the viewers' preparations that use this module, so it is not imported here)."""

    @property
    def bridge(self) -> RenderBridge: ...

    @property
    def access(self) -> RenderAccess: ...

log = logging.getLogger(__name__)

WARM_SIZE = 64

Depth = Literal["mpr", "preview", "full"]
"""How far to warm: the volume and its reslicer; and the coarse copy's ray caster; or the full
volume's ray caster (its gradients)."""


@dataclass(frozen=True)
class Warmed:
    series_uid: str
    ok: bool
    seconds: float
    reason: str = ""
    status: int = 200
    """The render service's status when not ``ok`` (422 refused by the library, 503 busy or
    restarting, 404 unknown)."""
    code: str = ""
    """The failure's reason code (``single-slice``, ``busy``, ...)."""
    build_ms: float | None = None
    """The volume's build done by this preparation (None: it was built already)."""
    preview: bool = False
    """The 3-D state made is the coarse copy's (a volume large enough to have one)."""


async def warm_source(bridge: RenderBridge, source: SeriesSource, depth: Depth,
                      background: bool = False) -> Warmed:
    """Build ``source``'s volume and the state ``depth`` names in its worker; ``background``
    queues the jobs after everything else (:class:`.workers.JobQueue`). Raises
    :class:`RenderFailure`."""
    started = time.perf_counter()
    info = await bridge.info(source, background)
    await bridge.mpr(source, MprSpec(size=WARM_SIZE), background)
    preview = False
    if depth != "mpr":
        frame = await bridge.volume(source, VolumeSpec(size=(WARM_SIZE, WARM_SIZE),
                                                       preview=depth == "preview"), background)
        preview = frame.preview
    seconds = time.perf_counter() - started
    log.info("series %s prepared for rendering (%s) in %.2f s%s", source.series_uid, depth,
             seconds, "" if info.timing.build_ms is None
             else f", its volume built in {info.timing.build_ms / 1000:.2f} s")
    return Warmed(source.series_uid, True, seconds, build_ms=info.timing.build_ms,
                  preview=preview)


async def prewarm(service: RenderService, series_uid: str, volume: bool = True) -> Warmed:
    """Build ``series_uid``'s volume (and its full ray caster's state when ``volume``) in its
    worker, for a live session (:func:`consilium.live.render_share.prepare_session`)."""
    started = time.perf_counter()
    try:
        opened = await service.access.prepared(series_uid)
        return await warm_source(service.bridge, opened.source, "full" if volume else "mpr")
    except RenderFailure as exc:
        log.info("series %s not prepared: %s", series_uid, exc.message)
        return Warmed(series_uid, False, time.perf_counter() - started, exc.message,
                      exc.status, exc.reason)
    except LookupError:
        log.info("series %s not prepared: unknown series", series_uid)
        return Warmed(series_uid, False, time.perf_counter() - started, "unknown series", 404)
