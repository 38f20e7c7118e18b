"""The render service of a process: one bridge to the workers and one access checker, shared by
the HTTP routes (:mod:`.routes`) and the Socket.IO events (:mod:`.events`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from consilium.render.access import RenderAccess
from consilium.render.bridge import RenderBridge
from consilium.service import Runtime


@dataclass(frozen=True)
class RenderService:
    runtime: Runtime
    bridge: RenderBridge
    access: RenderAccess


_services: dict[int, RenderService] = {}
_lock = threading.Lock()


def render_service(runtime: Runtime) -> RenderService:
    """The render service of ``runtime`` (created on first use; the worker processes start
    with the first render request)."""
    with _lock:
        found = _services.get(id(runtime))
        if found is None or found.runtime is not runtime:
            settings = runtime.settings
            found = RenderService(
                runtime,
                RenderBridge(settings.render_workers, settings.render_cache_mb,
                             settings.log_level, settings.pixels_max_frame_pixels),
                RenderAccess(runtime.access),
            )
            _services[id(runtime)] = found
        return found
