"""The volumes a render worker keeps warm between jobs, under a memory bound, and what each
keeps beside its voxels: the pipelines built on it, the size of its interactive 3-D frames, the
coarse copy of its previews. Used inside the worker processes (:mod:`.worker_process`).

The volume cache
    Each worker keeps the volumes it built in a :class:`VolumeCache` with an LRU order and a
    byte budget (``render_cache_mb`` split evenly over the workers). An entry costs its voxels
    plus, once it has been volume-rendered, :data:`RENDERER_BYTES_PER_VOXEL` per voxel for the
    ray caster's state (gradients, encoded normals, GL buffers: measured here, a shaded CT
    bone render of a 512x512x300 int16 volume grew the process by about 330 MB for 157 MB of
    voxels). Before a build, least recently used entries are evicted to make room for the new
    volume's estimated size; after every job the cache is trimmed back under the budget,
    never evicting the volume just used. A volume whose ray caster takes it over the budget is
    still served (alone); one whose int16 voxels alone exceed the budget is refused
    (``too-large``, 422).

Keys are (Series Instance UID, digest of the instances' hashes): a series that gains
instances is a new volume, and the stale one ages out of the LRU.

Adaptive interactive quality
    Interactive 3-D frames use the library's coarse ray step and a reduced size. The size is
    steered per volume and preset: after each interactive frame the scale moves towards the
    one that would take :data:`INTERACTIVE_TARGET_MS` to ray-cast, within
    :data:`INTERACTIVE_SCALE` of the requested size (a MIP, which samples every ray to the end,
    gets smaller frames than CT bone, and a busy machine gets smaller frames rather than fewer:
    CT bone on 2 cores at load 3-5 settled at a quarter of 512 px, 34-43 ms per frame). Final
    frames never adapt: the same request gives the same image.

Previews
    The full volume's first shaded 3-D frame computes the gradients of every voxel (seconds
    for a 300-slice CT). A job with ``VolumeSpec.preview`` set, while that has not happened
    yet, is answered from a coarse copy of the volume (:mod:`consilium_rendering.coarse`,
    kept beside the volume until the full ray caster has rendered) and its result is marked
    ``preview``; the render stream then asks for the full frame.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # the web process never imports VTK; the worker imports it at start
    from consilium_rendering import Reslicer, Volume, VolumeRenderer

RENDERER_BYTES_PER_VOXEL = 4
"""Charged per voxel once a volume has a ray caster (measured about 4.2 with shading)."""
INTERACTIVE_TARGET_MS = 30.0
"""Ray-casting time aimed at for one interactive 3-D frame: with the read-back, the JPEG and the
hop to the web process, a frame every 35-40 ms, the 25 frames/s a session's followers should see
while the presenter orbits (aiming at 60 ms, 8.6-16 frames/s reached them on 2 shared cores at
load 3-10, and 7.1-25.3 with 30 ms in the same runs: bench/README.md). A busy machine gets
smaller frames, not fewer; the final frame when the camera stops is full size."""
INTERACTIVE_SCALE = (0.25, 0.5)
"""Smallest and largest interactive frame size, as a fraction of the requested size."""
PREVIEW_MIN_VOXELS = 8_000_000
"""Volumes from this size on get a coarse first 3-D frame (``VolumeSpec.preview``): four times
the coarse copy's budget; below it the full volume's first shaded frame takes well under a
second on 2 cores, and a preview would only add a frame."""


class Cached(Protocol):
    def cost(self) -> int: ...

    def close(self) -> None: ...


E = TypeVar("E", bound=Cached)


class VolumeCache(Generic[E]):
    """Entries in least-recently-used order under a byte budget (costs may grow in place)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._entries: OrderedDict[Hashable, E] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> list[Hashable]:
        """Least recently used first."""
        return list(self._entries)

    @property
    def total(self) -> int:
        return sum(entry.cost() for entry in self._entries.values())

    def get(self, key: Hashable) -> E | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def make_room(self, incoming: int) -> list[Hashable]:
        """Evict least recently used entries until ``incoming`` more bytes fit (or none is
        left)."""
        evicted: list[Hashable] = []
        while self._entries and self.total + incoming > self.budget:
            evicted.append(self._evict_oldest())
        return evicted

    def put(self, key: Hashable, entry: E) -> list[Hashable]:
        """Add ``entry`` as the most recently used; returns the keys evicted for it."""
        old = self._entries.pop(key, None)
        if old is not None and old is not entry:
            old.close()
        self._entries[key] = entry
        return self.trim(keep=key)

    def trim(self, keep: Hashable | None = None) -> list[Hashable]:
        """Evict least recently used entries other than ``keep`` while over the budget."""
        evicted: list[Hashable] = []
        while self.total > self.budget:
            victims = [k for k in self._entries if k != keep]
            if not victims:
                break
            entry = self._entries.pop(victims[0])
            entry.close()
            self.evictions += 1
            evicted.append(victims[0])
        return evicted

    def _evict_oldest(self) -> Hashable:
        key, entry = self._entries.popitem(last=False)
        entry.close()
        self.evictions += 1
        return key

    def clear(self) -> None:
        while self._entries:
            self._evict_oldest()


@dataclass(eq=False)
class CachedVolume:
    """A volume and the pipelines built on it, kept warm between jobs."""

    volume: Volume
    build_ms: float
    _reslicer: Reslicer | None = None
    _renderer: VolumeRenderer | None = None
    _robust: tuple[float, float] | None = None
    _coarse: VolumeRenderer | None = None
    scales: dict[str, float] = field(default_factory=dict)
    """Interactive frame scale per preset (adaptive, see :meth:`adapt`)."""
    ray_cast: bool = False
    """The full volume's ray caster has rendered a frame (its gradients are computed)."""

    def cost(self) -> int:
        voxels = int(self.volume.voxels.size)
        extra = voxels * RENDERER_BYTES_PER_VOXEL if self._renderer is not None else 0
        if self._coarse is not None:
            coarse = self._coarse.volume
            extra += coarse.nbytes + int(coarse.voxels.size) * RENDERER_BYTES_PER_VOXEL
        return self.volume.nbytes + extra

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.drop_coarse()
        self._reslicer = None

    def drop_coarse(self) -> None:
        if self._coarse is not None:
            self._coarse.close()
            self._coarse = None

    def coarse_renderer(self) -> VolumeRenderer | None:
        """A ray caster of a coarse copy (:func:`consilium_rendering.coarse_volume`) for a
        first frame while the full one is cold; ``None`` once the full one has rendered, or
        when the volume is small enough for its own first frame to be quick
        (:data:`PREVIEW_MIN_VOXELS`)."""
        from consilium_rendering import VolumeRenderer, coarse_volume

        if self.ray_cast or self.volume.voxels.size < PREVIEW_MIN_VOXELS:
            return None
        if self._coarse is None:
            self._coarse = VolumeRenderer(coarse_volume(self.volume))
        return self._coarse

    def reslicer(self) -> Reslicer:
        from consilium_rendering import Reslicer

        if self._reslicer is None:
            self._reslicer = Reslicer(self.volume)
        return self._reslicer

    def renderer(self) -> VolumeRenderer:
        from consilium_rendering import VolumeRenderer

        if self._renderer is None:
            self._renderer = VolumeRenderer(self.volume)
        return self._renderer

    def robust_range(self) -> tuple[float, float]:
        from consilium_rendering.presets import intensity_range

        if self._robust is None:
            self._robust = intensity_range(self.volume)
        return self._robust

    def default_window(self) -> tuple[float, float]:
        """Soft tissue (40/400) for CT in HU, else the robust intensity range."""
        if self.volume.meta.units == "HU":
            return 40.0, 400.0
        low, high = self.robust_range()
        return (low + high) / 2.0, max(1.0, high - low)

    def default_preset(self) -> str:
        return "ct-bone" if self.volume.meta.modality == "CT" else "mr-default"

    def interactive_scale(self, preset: str) -> float:
        return self.scales.get(preset, INTERACTIVE_SCALE[1])

    def adapt(self, preset: str, seconds: float) -> None:
        """Steer the interactive frame size of ``preset`` towards :data:`INTERACTIVE_TARGET_MS`
        per frame (the cost grows with the pixels: the square of the scale); half way at a
        time, so one slow frame on a busy machine does not halve the image."""
        if seconds > 1.0:  # this frame computed the gradients: no measure of a frame
            return
        scale = self.interactive_scale(preset)
        wanted = scale * math.sqrt(INTERACTIVE_TARGET_MS / max(1.0, seconds * 1000.0))
        low, high = INTERACTIVE_SCALE
        self.scales[preset] = min(high, max(low, (scale + wanted) / 2.0))
