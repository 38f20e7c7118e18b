"""The session's shared render streams: the presenter's MPR panes and 3D view rendered once (per
web process that has participants of the session), the same frames to every follower.

Driven by the session's changes: each ``view.mpr`` / ``view.volume`` the feed takes becomes the
latest wanted view of its streams (``mpr:<pane>``, ``3d``); like a connection's own stream
(:mod:`consilium.render.events`) a stream renders only the latest (one job in flight),
interactive frames while the presenter moves, one full-quality frame once the view has been
still for :data:`DEBOUNCE_SECONDS` (or at once when the change says ``final``).

Flow control is per follower: at most :data:`WINDOW` frames of a stream unacknowledged
(``session:render_ack``). A follower whose window is full is skipped, and is sent the newest
frame when it acknowledges, if it has not had that one: a slow line gets fewer, newer frames and
never a backlog, and never holds the others back. The stream renders while at least one
follower can take a frame.

Access: the presenter could only set a series of the case's studies (checked when the change
was taken); every follower was let through the archive's gate for those studies when they
joined, each frame they get is recorded as a view of theirs (coalesced by the audit trail), and
their access is checked again every :data:`RECHECK_SECONDS` (a grant can end).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import ValidationError

from consilium.archive.access import Purpose, Reader, StudyRef
from consilium.live.events import (
    EVT_RENDER,
    EVT_RENDER_ERROR,
    NAMESPACE,
    ChangeKind,
    MprView,
    VolumeView,
    mpr_params,
    volume_params,
)
from consilium.render.access import OpenSeries
from consilium.render.bridge import RenderFailure
from consilium.render.events import parse_view
from consilium.render.prewarm import Warmed, prewarm
from consilium.render.protocol import BadParameter, FrameResult, MprSpec, Quality
from consilium.render.service import RenderService

log = logging.getLogger(__name__)

WINDOW = 2
ACK_TIMEOUT = 5.0
DEBOUNCE_SECONDS = 0.2
RECHECK_SECONDS = 30.0


def frame_order(payload: dict[str, Any]) -> tuple[int, int]:
    """Newer changes after older ones, and of one change the full-quality frame after the
    interactive one (the sharp frame once the presenter stops has the last change's seq)."""
    return int(payload["seq"]), 1 if payload["quality"] == "final" else 0


@dataclass(eq=False)
class Follower:
    sid: str
    reader: Reader
    sent: deque[float] = field(default_factory=deque)
    last: tuple[int, int] = (0, -1)  # frame_order() of the newest frame it was sent
    checked_at: float = field(default_factory=time.monotonic)
    frames: int = 0

    def room(self) -> bool:
        while self.sent and time.monotonic() - self.sent[0] > ACK_TIMEOUT:
            self.sent.popleft()  # it does not acknowledge: assume the frame arrived
        return len(self.sent) < WINDOW


class SharedStream:
    """One render view of one session in this process."""

    def __init__(self, share: SessionRender, view: str) -> None:
        self.share = share
        self.view = view
        self.kind = "volume" if view == "3d" else "mpr"
        self.series_uid = ""
        self.opened: OpenSeries | None = None
        self.params: dict[str, Any] = {}
        self.seq = 0
        self.pending: tuple[int, bool] | None = None
        self.final_due: int | None = None
        self.last_update = time.monotonic()
        self.last_frame: dict[str, Any] | None = None
        self.followers: dict[str, Follower] = {}
        self.wake = asyncio.Event()
        self.rendered = {"interactive": 0, "final": 0}
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"live-render-{share.session_id}-{view}")

    def update(self, seq: int, series_uid: str, params: dict[str, Any], final: bool) -> None:
        if seq <= self.seq:
            return
        if series_uid != self.series_uid:
            self.series_uid, self.opened = series_uid, None
        self.seq, self.params = seq, params
        self.pending = (seq, final)
        self.last_update = time.monotonic()
        self.wake.set()

    def follow(self, sid: str, reader: Reader) -> None:
        if sid not in self.followers:
            self.followers[sid] = Follower(sid, reader)
        follower = self.followers[sid]
        if self.last_frame is not None and follower.last[0] < int(self.last_frame["seq"]):
            self._deliver(self.last_frame, [follower])
        elif self.last_frame is None and self.seq:
            self.pending = self.pending or (self.seq, True)
        self.wake.set()

    def unfollow(self, sid: str) -> None:
        self.followers.pop(sid, None)

    def acked(self, sid: str, *_args: Any) -> None:
        follower = self.followers.get(sid)
        if follower is None:
            return
        if follower.sent:
            follower.sent.popleft()
        newest = self.last_frame
        if newest is not None and follower.last < frame_order(newest):
            self._deliver(newest, [follower])
        self.wake.set()

    async def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def _next(self) -> tuple[tuple[int, Quality] | None, float | None]:
        if not self.series_uid or not any(f.room() for f in self.followers.values()):
            return None, ACK_TIMEOUT if self.followers else None
        if self.pending is not None:
            seq, final = self.pending
            self.pending = None
            return (seq, "final" if final else "interactive"), None
        if self.final_due is not None:
            quiet = time.monotonic() - self.last_update
            if quiet >= DEBOUNCE_SECONDS:
                seq, self.final_due = self.final_due, None
                return (seq, "final"), None
            return None, DEBOUNCE_SECONDS - quiet
        return None, None

    async def _run(self) -> None:
        while True:
            try:
                self.wake.clear()
                job, wait = self._next()
                if job is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), wait)
                    continue
                await self._render(*job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: report it, keep the session's stream alive
                log.exception("shared render %s of session %s failed", self.view,
                              self.share.session_id)
                await asyncio.sleep(1.0)

    async def _render(self, seq: int, quality: Quality) -> None:
        share = self.share
        params = self.params
        try:
            if self.opened is None or self.opened.source.series_uid != self.series_uid:
                self.opened = await share.service.access.prepared(self.series_uid)
            spec = parse_view(self.kind, params, quality)
            frame: FrameResult
            if isinstance(spec, MprSpec):
                frame = await share.service.bridge.mpr(self.opened.source, spec)
            else:
                frame = await share.service.bridge.volume(self.opened.source, spec)
        except (BadParameter, RenderFailure, LookupError) as exc:
            status, message, reason = (
                (exc.status, exc.message, exc.reason) if isinstance(exc, RenderFailure)
                else (400, str(exc), "parameter") if isinstance(exc, BadParameter)
                else (404, "no such series here", "gone"))
            await share.error(self.view, seq, status, message, reason)
            return
        if quality == "interactive":
            self.final_due = seq
        elif self.final_due is not None and self.final_due <= seq:
            self.final_due = None
        self.rendered[quality] += 1
        payload = {"session_id": share.session_id, "view": self.view, "seq": seq,
                   "quality": quality, "media_type": frame.media_type, "width": frame.width,
                   "height": frame.height, "geometry": frame.geometry,
                   "render_ms": frame.timing.render_ms, "build_ms": frame.timing.build_ms,
                   "image": frame.data}
        self.last_frame = payload
        self._deliver(payload, [f for f in self.followers.values() if f.room()])

    def _deliver(self, payload: dict[str, Any], followers: list[Follower]) -> None:
        """Send a frame to ``followers`` without holding up the next render: their windows are
        taken now, the sends go out in a task (in the order of the frames: nothing in it waits
        before the emit). Measured with 10 followers of a 300-slice CT on 2 cores: sending
        before asking for the next frame gave each follower 0.83-0.93 of the frame rate one
        viewer alone got in the same run; sending beside it, 1.2-1.3."""
        key = frame_order(payload)
        targets = [f for f in followers
                   if self.followers.get(f.sid) is f and f.last < key and self._allowed(f)]
        if not targets:
            return
        for follower in targets:
            follower.last = key
            follower.sent.append(time.monotonic())
            follower.frames += 1
        self.share.spawn(self._emit(payload, targets))

    async def _emit(self, payload: dict[str, Any], targets: list[Follower]) -> None:
        sio = self.share.sio
        await asyncio.gather(*(
            sio.emit(EVT_RENDER, payload, to=f.sid, namespace=NAMESPACE,
                     callback=functools.partial(self.acked, f.sid), ignore_queue=True)
            for f in targets))
        if self.opened is not None:
            gate = self.share.service.access.gate
            for follower in targets:
                gate.viewed(follower.reader, self.opened.study, Purpose.FRAME,
                            {"what": "consilium render", "series": self.series_uid})

    def _allowed(self, follower: Follower) -> bool:
        """Whether the follower may get frames; their access is checked again every
        :data:`RECHECK_SECONDS`, beside the stream (a refusal stops the next frames)."""
        if self.opened is not None and time.monotonic() - follower.checked_at >= RECHECK_SECONDS:
            follower.checked_at = time.monotonic()
            self.share.spawn(self._recheck(follower, self.opened.study))
        return True

    async def _recheck(self, follower: Follower, study: StudyRef) -> None:
        gate = self.share.service.access.gate
        allowed = await anyio.to_thread.run_sync(
            lambda: gate.still_allowed(follower.reader, study, Purpose.FRAME,
                                       series_uid=self.series_uid))
        if not allowed:
            self.followers.pop(follower.sid, None)
            await self.share.error(self.view, None, 404, "no such series here", "gone",
                                   to=follower.sid)


class SessionRender:
    """The shared render streams of one session in this process."""

    def __init__(self, session_id: str, service: RenderService, sio: Any) -> None:
        self.session_id = session_id
        self.service = service
        self.sio = sio
        self.hub_loop = asyncio.get_running_loop()
        self.streams: dict[str, SharedStream] = {}
        self.wanted: dict[str, tuple[int, str, dict[str, Any], bool]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.hub_loop.create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def on_view(self, kind: str, payload: dict[str, Any], seq: int) -> None:
        """A view change the session's feed took (in seq order)."""
        final = bool(payload.get("final", False))
        try:
            if kind == ChangeKind.VIEW_VOLUME:
                volume = VolumeView.model_validate(payload["state"])
                self._want("3d", seq, volume.series_uid, volume_params(volume), final)
            elif kind == ChangeKind.VIEW_MPR:
                mpr = MprView.model_validate(payload["state"])
                for pane in mpr.panes:
                    self._want(f"mpr:{pane}", seq, mpr.series_uid, mpr_params(mpr, pane),
                               final)
        except (ValidationError, KeyError) as exc:  # validated when taken; a newer client?
            log.warning("session %s: a view change the render cannot read: %s",
                        self.session_id, exc)

    def _want(self, view: str, seq: int, series_uid: str, params: dict[str, Any],
              final: bool) -> None:
        self.wanted[view] = (seq, series_uid, params, final)
        stream = self.streams.get(view)
        if stream is not None:
            stream.update(seq, series_uid, params, final)

    def follow(self, sid: str, reader: Reader, views: list[str]) -> None:
        """``sid`` receives exactly ``views`` from now on."""
        for view, existing in self.streams.items():
            if view not in views:
                existing.unfollow(sid)
        for view in views:
            stream = self.streams.get(view)
            if stream is None:
                stream = self.streams[view] = SharedStream(self, view)
                if view in self.wanted:
                    seq, series_uid, params, _ = self.wanted[view]
                    stream.update(seq, series_uid, params, True)
            stream.follow(sid, reader)

    def drop(self, sid: str) -> None:
        for stream in self.streams.values():
            stream.unfollow(sid)

    async def error(self, view: str, seq: int | None, status: int, message: str, reason: str,
                    to: str | None = None) -> None:
        payload = {"session_id": self.session_id, "view": view, "seq": seq, "status": status,
                   "error": message, "reason": reason}
        targets = [to] if to else [sid for s in self.streams.values() if s.view == view
                                   for sid in s.followers]
        for sid in targets:
            await self.sio.emit(EVT_RENDER_ERROR, payload, to=sid, namespace=NAMESPACE,
                                ignore_queue=True)

    async def close(self) -> None:
        for stream in self.streams.values():
            await stream.close()
        self.streams.clear()


PREPARE_MIN_IMAGES = 8
"""Series with fewer images are not volumes worth preparing (a scout, a report)."""
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})


async def prepare_session(service: RenderService, study_uids: list[str], limit: int
                          ) -> list[Warmed]:
    """Prepare the largest series of a session's studies in the render workers (3-D state too
    for CT, MR, PET and NM)."""
    from consilium.archive import catalog

    if limit <= 0 or not study_uids:
        return []
    found = await anyio.to_thread.run_sync(catalog.series_of_studies,
                                           service.access.gate.engine, study_uids)
    chosen = [s for s in found if s.instances >= PREPARE_MIN_IMAGES][:limit]
    return [await prewarm(service, s.series_uid, volume=s.modality in VOLUME_MODALITIES)
            for s in chosen]
