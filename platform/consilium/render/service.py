"""The render service of a process: one bridge to the workers, one access checker and the
viewers' volume preparations (:mod:`.prepare`), shared by the HTTP routes (:mod:`.routes`), the
Socket.IO events (:mod:`.events`) and the live sessions' shared streams. The app builds one and
hands it to each of them."""

from __future__ import annotations

from dataclasses import dataclass

from consilium.archive.access import ArchiveAccess
from consilium.render.access import RenderAccess
from consilium.render.bridge import RenderBridge
from consilium.render.prepare import Preparations
from consilium.settings import Settings


@dataclass(frozen=True)
class RenderService:
    bridge: RenderBridge
    access: RenderAccess
    preparations: Preparations


def render_service(settings: Settings, gate: ArchiveAccess) -> RenderService:
    """A render service over the archive's gate (its worker processes start with the first
    render request, not here)."""
    bridge = RenderBridge(settings.render_workers, settings.render_cache_mb,
                          settings.log_level, settings.pixels_max_frame_pixels)
    return RenderService(bridge, RenderAccess(gate), Preparations(bridge))
