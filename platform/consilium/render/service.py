"""The render service of a process: one bridge to the workers and one access checker, shared by
the HTTP routes (:mod:`.routes`), the Socket.IO events (:mod:`.events`) and the live sessions'
shared streams. The app builds one and hands it to each of them."""

from __future__ import annotations

from dataclasses import dataclass

from consilium.archive.access import ArchiveAccess
from consilium.render.access import RenderAccess
from consilium.render.bridge import RenderBridge
from consilium.settings import Settings


@dataclass(frozen=True)
class RenderService:
    bridge: RenderBridge
    access: RenderAccess


def render_service(settings: Settings, gate: ArchiveAccess) -> RenderService:
    """A render service over the archive's gate (its worker processes start with the first
    render request, not here)."""
    return RenderService(
        RenderBridge(settings.render_workers, settings.render_cache_mb, settings.log_level,
                     settings.pixels_max_frame_pixels),
        RenderAccess(gate),
    )
