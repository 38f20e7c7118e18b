"""Interactive rendering over Socket.IO: the client streams view changes, the server streams
JPEG frames of the latest one.

Events (all on the default namespace of the authenticated connection, see
:mod:`consilium.live.socket`):

``render:subscribe`` (client -> server, with acknowledgement)
    ``{"view": "3d", "series_uid": "...", "kind": "volume" | "mpr", "params": {...}}``.
    ``view`` names the stream (a client may hold up to :data:`MAX_STREAMS`, e.g. ``3d``,
    ``axial``, ``coronal``); subscribing again to a view replaces it. ``params`` are those of
    the HTTP routes (:mod:`.routes`: ``preset``, ``azimuth``, ... for ``volume``;
    ``orientation``, ``point``, ``slab``, ... for ``mpr``), as numbers, lists or strings.
    The series is authorized like every image request (404 when the caller may not read it)
    and audited as one view of the study. Ack: ``{"ok": true, "view", "info": {...}}`` with
    the volume information of ``GET .../info``, or ``{"ok": false, "status", "error",
    "reason"}``. A full-quality frame of the initial view follows.

``render:update`` (client -> server, as often as the pointer moves)
    ``{"view": "3d", "seq": 17, "params": {"azimuth": 31.5}, "final": false}``: ``params``
    are merged into the view's current ones. The server keeps only the **latest** update per
    view: while a frame renders, newer updates replace older ones, which are dropped, never
    queued. Each update gets an interactive frame (coarser rays, a quarter to half the
    size, adapted to the machine) when the worker is free; when no update has come for
    :data:`DEBOUNCE_SECONDS`, one full-quality frame of the last view follows.
    ``final: true`` asks for the full-quality frame at once (a preset change, the pointer
    released). ``seq`` (increasing) is echoed in the frames.

``render:frame`` (server -> client, the client acknowledges each)
    ``{"view", "seq", "quality": "interactive" | "final", "media_type": "image/jpeg",
    "width", "height", "geometry": {...}, "render_ms", "build_ms", "image": <binary>}``;
    ``geometry`` is the plane (MPR) or camera (3-D) of the frame, as in the HTTP headers.
    ``"preview": true`` marks the first 3-D frame of a large volume when it was rendered from
    a coarse copy (quality ``interactive``): the full volume's ray caster needs seconds for
    its first frame (its gradients); the frame of the full volume, with the same ``seq``,
    follows without being asked for (:data:`FULL_AFTER_PREVIEW_SECONDS` later: the other
    panes' first frames go before it).
    Flow control: at most :data:`WINDOW` frames of a view are unacknowledged; a slow line
    thus gets fewer frames, always of the latest view, instead of a growing backlog. A client
    that never acknowledges is assumed to have received a frame after :data:`ACK_TIMEOUT`.

``render:unsubscribe`` (client -> server, with acknowledgement)
    ``{"view": "3d"}``. Disconnecting ends every stream of the connection.

``render:error`` (server -> client)
    ``{"view", "seq", "status", "error", "reason"}``: a bad update (400), the series or view
    the library refuses (422), the worker restarting (503; the next update renders again),
    access ended (404: the stream is closed; a grant can be revoked during a session, so
    access is checked again every :data:`RECHECK_SECONDS`).

The rendering itself runs in the render workers (:mod:`.bridge`); one stream has at most one
job in flight, so a stream can never flood the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consilium.archive.access import Purpose, Reader
from consilium.identity.policy import Principal
from consilium.identity.web import client_address
from consilium.render.access import OpenSeries
from consilium.render.bridge import RenderFailure
from consilium.render.protocol import (
    MPR_KEYS,
    VOLUME_KEYS,
    BadParameter,
    FrameResult,
    MprSpec,
    Quality,
    VolumeSpec,
    check_keys,
    parse_mpr,
    parse_volume,
)
from consilium.render.service import RenderService

log = logging.getLogger(__name__)

EVT_SUBSCRIBE = "render:subscribe"
EVT_UPDATE = "render:update"
EVT_UNSUBSCRIBE = "render:unsubscribe"
EVT_FRAME = "render:frame"
EVT_ERROR = "render:error"

DEBOUNCE_SECONDS = 0.2
"""Quiet time after the last update before the full-quality frame."""
FULL_AFTER_PREVIEW_SECONDS = 1.0
"""Time between a coarse 3-D preview and asking for the full frame, whose first render holds
the series' worker for seconds (the gradients): the other panes of the layout, subscribed
right after the first, get their first frames queued before it. Without it one pane in four
runs waited 20 s behind the gradients on a loaded machine (their access checks were slower
than the preview)."""
WINDOW = 2
"""Frames of one view sent and not yet acknowledged."""
ACK_TIMEOUT = 5.0
RECHECK_SECONDS = 30.0
MAX_STREAMS = 8


# --------------------------------------------------------------------------- payloads


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    view: str = Field(min_length=1, max_length=64)
    series_uid: str = Field(min_length=1, max_length=64)
    kind: Literal["volume", "mpr"] = "volume"
    params: dict[str, Any] = Field(default_factory=dict)


class Update(BaseModel):
    model_config = ConfigDict(extra="forbid")

    view: str = Field(min_length=1, max_length=64)
    seq: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    final: bool = False


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    view: str = Field(min_length=1, max_length=64)


class FramePayload(BaseModel):
    view: str
    seq: int
    quality: Quality
    media_type: str
    width: int
    height: int
    geometry: dict[str, Any]
    render_ms: float
    build_ms: float | None
    image: bytes
    preview: bool = False


class ErrorPayload(BaseModel):
    view: str
    seq: int | None = None
    status: int
    error: str
    reason: str = ""


def parse_view(kind: str, params: dict[str, Any], quality: Quality) -> MprSpec | VolumeSpec:
    """A view's spec from its accumulated parameters (``quality`` set by the stream)."""
    check_keys(params, MPR_KEYS if kind == "mpr" else VOLUME_KEYS)
    merged = {**params, "quality": quality}
    return parse_mpr(merged) if kind == "mpr" else parse_volume(merged)


# --------------------------------------------------------------------------- one stream


class Stream:
    """One view of one connection: the latest update, rendered when the worker is free."""

    def __init__(self, events: RenderEvents, sid: str, view: str, kind: str,
                 opened: OpenSeries, reader: Reader, params: dict[str, Any]) -> None:
        self.events = events
        self.sid = sid
        self.view = view
        self.kind = kind
        self.opened = opened
        self.source = opened.source
        self.reader = reader
        self.params = params
        self.pending: tuple[int, dict[str, Any], bool] | None = (0, params, True)
        self.final_due: tuple[int, dict[str, Any]] | None = None
        self.seq = 0
        self.last_update = time.monotonic()
        self.checked_at = time.monotonic()
        self.sent: deque[float] = deque()
        self.wake = asyncio.Event()
        self.superseded = 0
        self.frames: dict[str, int] = {"interactive": 0, "final": 0}
        self.preview_first = kind == "volume"
        """The first 3-D frame may come from a coarse copy (see the module docstring)."""
        self.preview_at: float | None = None
        """When a preview was sent whose full frame is still due."""
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"render-stream-{self.sid}-{self.view}")

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def update(self, update: Update) -> None:
        """Take ``update`` as the latest view (raises :class:`BadParameter`)."""
        seq = update.seq if update.seq is not None else self.seq + 1
        if seq <= self.seq:
            return  # older than one already taken
        merged = {**self.params, **update.params}
        parse_view(self.kind, merged, "final")  # reject a bad update now, not when rendered
        self.seq, self.params = seq, merged
        if self.pending is not None:
            self.superseded += 1
        self.pending = (seq, merged, update.final)
        self.last_update = time.monotonic()
        self.wake.set()

    def acked(self, *_args: Any) -> None:
        if self.sent:
            self.sent.popleft()
        self.wake.set()

    def _window_full(self) -> bool:
        while self.sent and time.monotonic() - self.sent[0] > ACK_TIMEOUT:
            self.sent.popleft()  # a client that does not acknowledge
        return len(self.sent) >= WINDOW

    def _next(self) -> tuple[tuple[int, dict[str, Any], Quality] | None, float | None]:
        """The frame to render now, or how long to wait for something to change."""
        if self._window_full():
            return None, ACK_TIMEOUT
        if self.pending is not None:
            seq, params, final = self.pending
            self.pending = None
            return (seq, params, "final" if final else "interactive"), None
        if self.final_due is not None:
            now = time.monotonic()
            wait = DEBOUNCE_SECONDS - (now - self.last_update)
            if self.preview_at is not None:
                wait = max(wait, self.preview_at + FULL_AFTER_PREVIEW_SECONDS - now)
            if wait <= 0:
                seq, params = self.final_due
                self.final_due = self.preview_at = None
                return (seq, params, "final"), None
            return None, wait
        return None, None

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: end this stream, tell the client, keep the connection
            log.exception("render stream %s of %s failed", self.view, self.sid)
            self.events.forget(self.sid, self.view, self)
            await self.events.error(self.sid, ErrorPayload(
                view=self.view, status=500, error="internal error; see the server log"))

    async def _loop(self) -> None:
        while True:
            self.wake.clear()
            job, wait = self._next()
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
                continue
            if not await self._allowed():
                return
            await self._render(*job)

    async def _allowed(self) -> bool:
        if time.monotonic() - self.checked_at < RECHECK_SECONDS:
            return True
        self.checked_at = time.monotonic()
        if await self.events.service.access.still_allowed(self.reader, self.opened):
            return True
        await self.events.error(self.sid, ErrorPayload(
            view=self.view, status=404, error="no such series here"))
        self.events.forget(self.sid, self.view, self)
        return False

    async def _render(self, seq: int, params: dict[str, Any], quality: Quality) -> None:
        bridge = self.events.service.bridge
        try:
            spec = parse_view(self.kind, params, quality)
            frame: FrameResult
            if isinstance(spec, MprSpec):
                frame = await bridge.mpr(self.source, spec)
            else:
                if self.preview_first:
                    self.preview_first = False
                    spec = replace(spec, preview=True)
                frame = await bridge.volume(self.source, spec)
        except (BadParameter, RenderFailure) as exc:
            status, message, reason = (
                (exc.status, exc.message, exc.reason) if isinstance(exc, RenderFailure)
                else (400, str(exc), "parameter"))
            await self.events.error(self.sid, ErrorPayload(
                view=self.view, seq=seq, status=status, error=message, reason=reason))
            return
        if frame.preview:
            quality = "interactive"  # coarse pixels are never a final frame
            self.final_due = (seq, params)  # the full frame of this view, as after a drag
            self.preview_at = time.monotonic()
        elif quality == "interactive":
            self.final_due = (seq, params)
        elif self.final_due is not None and self.final_due[0] <= seq:
            self.final_due = None
        payload = FramePayload(
            view=self.view, seq=seq, quality=quality, media_type=frame.media_type,
            width=frame.width, height=frame.height, geometry=frame.geometry,
            render_ms=frame.timing.render_ms, build_ms=frame.timing.build_ms, image=frame.data,
            preview=frame.preview)
        self.sent.append(time.monotonic())
        self.frames[quality] += 1
        # to this process's own client: with the Redis manager, not through Redis to the others
        await self.events.sio.emit(EVT_FRAME, payload.model_dump(), to=self.sid,
                                   callback=self.acked, ignore_queue=True)
        self.events.service.access.viewed(self.reader, self.opened, "3D stream")


# --------------------------------------------------------------------------- the handlers


class RenderEvents:
    """The render stream handlers of one Socket.IO server."""

    def __init__(self, sio: Any, service: RenderService) -> None:
        self.sio = sio
        self.service = service
        self.streams: dict[str, dict[str, Stream]] = {}

    def register(self) -> None:
        self.sio.on(EVT_SUBSCRIBE, self.subscribe)
        self.sio.on(EVT_UPDATE, self.update)
        self.sio.on(EVT_UNSUBSCRIBE, self.unsubscribe)

    async def error(self, sid: str, payload: ErrorPayload) -> None:
        await self.sio.emit(EVT_ERROR, payload.model_dump(), to=sid, ignore_queue=True)

    async def _reader(self, sid: str) -> Reader:
        session = await self.sio.get_session(sid)
        principal: Principal = session["principal"]
        environ = self.sio.get_environ(sid) or {}
        return Reader.of(principal, client_address(environ.get("asgi.scope", {})), "socket")

    async def subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        try:
            message = Subscribe.model_validate(data)
            reader = await self._reader(sid)
            parse_view(message.kind, message.params, "final")
            streams = self.streams.setdefault(sid, {})
            if message.view not in streams and len(streams) >= MAX_STREAMS:
                raise BadParameter(f"at most {MAX_STREAMS} render views per connection")
            opened = await self.service.access.series(reader, message.series_uid,
                                                      Purpose.FRAME, {"what": "3D stream"})
            info = await self.service.bridge.info(opened.source)
        except ValidationError as exc:
            return _refusal(400, f"bad subscription: {_first_error(exc)}", "parameter")
        except BadParameter as exc:
            return _refusal(400, str(exc), "parameter")
        except RenderFailure as exc:
            return _refusal(exc.status, exc.message, exc.reason)
        if sid not in self.streams:  # disconnected while the volume was built
            return _refusal(410, "the connection is closing", "gone")
        old = self.streams[sid].pop(message.view, None)
        if old is not None:
            await old.close()
        stream = Stream(self, sid, message.view, message.kind, opened, reader, message.params)
        self.streams.setdefault(sid, {})[message.view] = stream
        stream.start()
        return {"ok": True, "view": message.view, "info": info.payload}

    async def update(self, sid: str, data: Any = None) -> None:
        # No await before the update is taken: updates of one connection are taken in order.
        try:
            message = Update.model_validate(data)
        except ValidationError as exc:
            view = data.get("view", "") if isinstance(data, dict) else ""
            await self.error(sid, ErrorPayload(view=str(view), status=400,
                                               error=f"bad update: {_first_error(exc)}",
                                               reason="parameter"))
            return
        stream = self.streams.get(sid, {}).get(message.view)
        if stream is None:
            await self.error(sid, ErrorPayload(view=message.view, seq=message.seq, status=404,
                                               error="no such view; subscribe first",
                                               reason="no-view"))
            return
        try:
            stream.update(message)
        except BadParameter as exc:
            await self.error(sid, ErrorPayload(view=message.view, seq=message.seq, status=400,
                                               error=str(exc), reason="parameter"))

    async def unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        try:
            message = Unsubscribe.model_validate(data)
        except ValidationError as exc:
            return _refusal(400, f"bad request: {_first_error(exc)}", "parameter")
        stream = self.streams.get(sid, {}).pop(message.view, None)
        if stream is not None:
            await stream.close()
        return {"ok": stream is not None, "view": message.view}

    def forget(self, sid: str, view: str, stream: Stream) -> None:
        streams = self.streams.get(sid, {})
        if streams.get(view) is stream:
            del streams[view]

    async def disconnect(self, sid: str) -> None:
        """End every stream of a connection that closed."""
        streams = self.streams.pop(sid, {})
        for stream in streams.values():
            await stream.close()


def _refusal(status: int, message: str, reason: str) -> dict[str, Any]:
    return {"ok": False, "status": status, "error": message, "reason": reason}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))


def register_render_events(sio: Any, service: RenderService) -> RenderEvents:
    """Register the render stream events on ``sio``; call :meth:`RenderEvents.disconnect` from
    the server's disconnect handler."""
    events = RenderEvents(sio, service)
    events.register()
    return events
