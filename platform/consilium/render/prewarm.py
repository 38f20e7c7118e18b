"""Preparing volumes before anyone asks for a frame of them (a live session that opens, or is
about to).

A cold first 3-D frame costs the volume's build (reading and stacking the slices) plus the ray
caster's first frame, which computes the gradients of every voxel: 2.4-4.8 s for a 300-slice CT
on 2 cores, measured. Both are kept by the worker that owns the series (:mod:`.workers`), for
every later frame of any preset. So warming is: the volume's information (the build), one tiny
final 3-D frame (the gradients) and one tiny MPR (the reslicer), in the worker the series
sticks to. The jobs queue behind interactive ones like any other; a series the library refuses
(a single image, a report) is simply not warm.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from consilium.render.bridge import RenderFailure
from consilium.render.protocol import MprSpec, VolumeSpec
from consilium.render.service import RenderService

log = logging.getLogger(__name__)

WARM_SIZE = 64


@dataclass(frozen=True)
class Warmed:
    series_uid: str
    ok: bool
    seconds: float
    reason: str = ""


async def prewarm(service: RenderService, series_uid: str, volume: bool = True) -> Warmed:
    """Build ``series_uid``'s volume (and its ray caster's state when ``volume``) in its
    worker."""
    started = time.perf_counter()
    try:
        opened = await service.access.prepared(series_uid)
        await service.bridge.info(opened.source)
        await service.bridge.mpr(opened.source, MprSpec(size=WARM_SIZE))
        if volume:
            await service.bridge.volume(opened.source, VolumeSpec(size=(WARM_SIZE, WARM_SIZE)))
    except (RenderFailure, LookupError) as exc:
        reason = exc.message if isinstance(exc, RenderFailure) else "unknown series"
        log.info("series %s not prepared: %s", series_uid, reason)
        return Warmed(series_uid, False, time.perf_counter() - started, reason)
    seconds = time.perf_counter() - started
    log.info("series %s prepared for rendering in %.2f s", series_uid, seconds)
    return Warmed(series_uid, True, seconds)
