"""The values under an elliptical ROI of an MPR pane (HU for CT), from the series' volume.

The MPR panes get windowed frames, so the statistics of an ROI drawn on one are asked of the
render worker that holds the volume (the same worker, volume cache and gate as the pane's frames):

``GET /api/render/series/{series_uid}/roi-stats?points=<12 numbers>[&slab=<mm>&mode=<mode>]``
    ``points``: the ellipse as the MPR pane keeps it (``points3d`` of an ``ellipse`` mark): the
    two ends of its major axis, then of its minor axis, patient LPS mm, comma-separated; ``slab``
    and ``mode`` as the pane's (the values then are the slab's, as shown). Answer (JSON, never
    cached): ``mean``, ``stdev`` (population), ``min``, ``max`` in ``unit`` (``HU`` for CT, the
    series' rescale type otherwise), ``pixels`` (samples inside the ellipse and the volume),
    ``area_mm2``, ``spacing_mm`` (grid step along the two axes: one voxel, coarser beyond
    :data:`consilium_rendering.roi.MAX_ROI_SAMPLES` samples), ``slab_samples``. How the ellipse
    is sampled: :mod:`consilium_rendering.roi`.

The series goes through the archive's gate before the parameters are read (a ``frame`` access of
its study, like the pane's images; 404 for a foreign and a missing series alike); then **400** for
parameters that cannot be read, **422** ``roi`` for four points that are no ellipse of this
volume (axes not perpendicular, no area, larger than the volume, outside it), **503** as for the
other render requests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consilium.render.protocol import (
    SLAB_MODES,
    BadParameter,
    RoiStatsSpec,
    StatsResult,
    Timing,
    check_keys,
    choice,
    number,
    numbers,
)

if TYPE_CHECKING:  # the web process never imports VTK
    from consilium_rendering import Reslicer, Volume

ROI_KEYS = frozenset({"points", "slab", "mode"})
MAX_SLAB_MM = 500.0


def parse_roi_stats(params: Mapping[str, Any]) -> RoiStatsSpec:
    """``points`` (12 numbers), ``slab`` (mm, default 0), ``mode``."""
    check_keys(params, ROI_KEYS)
    if params.get("points") in (None, ""):
        raise BadParameter("points must give the ellipse: the ends of its major axis, then of "
                           "its minor axis (12 numbers, patient mm)")
    v = numbers(params["points"], "points", 12)
    return RoiStatsSpec(
        points=((v[0], v[1], v[2]), (v[3], v[4], v[5]), (v[6], v[7], v[8]),
                (v[9], v[10], v[11])),
        slab_mm=number(params, "slab", 0.0, low=0.0, high=MAX_SLAB_MM),
        slab_mode=choice(params, "mode", SLAB_MODES, "max"),
    )


def roi_statistics(volume: Volume, reslicer: Reslicer, spec: RoiStatsSpec,
                   build_ms: float | None, started: float) -> StatsResult:
    """In the render worker: the statistics of ``spec`` on the cached ``volume``."""
    from consilium_rendering import Slab, SlabMode
    from consilium_rendering.roi import ellipse_statistics

    slab = Slab(spec.slab_mm, SlabMode(spec.slab_mode)) if spec.slab_mm > 0 else None
    stats = ellipse_statistics(volume, spec.points, slab, reslicer=reslicer)
    payload = {
        "mean": stats.mean, "stdev": stats.stdev, "min": stats.min, "max": stats.max,
        "pixels": stats.pixels, "area_mm2": stats.area_mm2, "unit": stats.units,
        "spacing_mm": list(stats.spacing_mm), "slab_samples": stats.slab_samples,
    }
    return StatsResult(payload, Timing(build_ms, (time.perf_counter() - started) * 1000.0))
