"""A coarse copy of a volume, for a first 3-D frame while the full volume's ray caster warms up.

Why: the CPU ray caster's first shaded frame computes the gradients of every voxel, on one
thread: for a 512x512x300 CT about 3.6 s on an idle 2-core machine and 5-16 s while the same
machine also loads slices and runs a browser (bench/README.md, the regional link). A copy with
every 4th voxel in-plane and every 3rd slice (1.6 M voxels) gives its first shaded frame in
0.2-0.4 s there. The service shows that frame, marked as a preview, and replaces it with the full
volume's frame as soon as that is rendered.

Every n-th voxel is kept (no averaging): the coarse voxels are voxels of the full grid, so the
coarse affine is the full one with scaled columns and the copy lies exactly where the volume
lies in patient space; a camera placed for the full volume frames it the same way.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import cast

import numpy as np

from consilium_rendering.volume import Volume, Voxels

__all__ = ["COARSE_VOXELS", "coarse_steps", "coarse_volume"]

COARSE_VOXELS = 2_000_000
"""Voxel budget of a coarse copy: its first shaded frame well under half a second on 2 busy
cores (1.6 M voxels: 0.2-0.4 s measured, against 5-16 s for the 78 M of the full CT)."""


def coarse_steps(volume: Volume, max_voxels: int = COARSE_VOXELS) -> tuple[int, int, int]:
    """Steps along (i, j, k) that bring ``volume`` within ``max_voxels``, as near isotropic as
    whole steps allow: the axis with the finest coarse spacing is thinned first, and every axis
    keeps at least two voxels. (1, 1, 1) when the volume is within the budget already."""
    dims = volume.dimensions
    spacing = volume.spacing
    steps = [1, 1, 1]

    def count() -> int:
        return math.prod(math.ceil(n / s) for n, s in zip(dims, steps, strict=True))

    while count() > max_voxels:
        thinnable = [a for a in range(3) if math.ceil(dims[a] / (steps[a] + 1)) >= 2]
        if not thinnable:
            break
        axis = min(thinnable, key=lambda a: (spacing[a] * steps[a], -dims[a] / steps[a]))
        steps[axis] += 1
    return steps[0], steps[1], steps[2]


def coarse_volume(volume: Volume, max_voxels: int = COARSE_VOXELS) -> Volume:
    """Every n-th voxel of ``volume`` (see :func:`coarse_steps`) as a volume of its own, with
    the full volume's value range (presets resolve their transfer functions from it)."""
    si, sj, sk = coarse_steps(volume, max_voxels)
    voxels = cast(Voxels, np.ascontiguousarray(volume.voxels[::sk, ::sj, ::si]))
    voxels.setflags(write=False)
    affine = volume.affine.copy()
    affine[:3, 0] *= si
    affine[:3, 1] *= sj
    affine[:3, 2] *= sk
    report = replace(volume.report, slices=int(voxels.shape[0]),
                     spacing_mm=volume.report.spacing_mm * sk, interpolated=())
    return Volume(voxels, affine, volume.meta, report, volume.value_range)
