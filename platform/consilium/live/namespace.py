"""The Socket.IO namespace ``/consilium``: parse, check, call the session's hub, answer.

Connections authenticate like those of the default namespace (session cookie or bearer
token). Every event is answered by its acknowledgement, ``{"ok": true, ...}`` or
``{"ok": false, "status", "error", "reason"}``. Each event names its session; an event for a
session this connection has not joined is checked like a join: a session that is not the
caller's (another institution's case, an uninvited one, an expired invitation) and one that does
not exist get the same 404 and leave the same ``denied`` audit event; a session the caller may
join but has not joined gets 409. The session is checked before the rest of the payload, so a
stranger's malformed request says nothing either.

The events of one connection are handled one after the other, in the order they arrived (a
lock per connection: Socket.IO runs each event in its own task), so a presenter's later view
change never overtakes an earlier one. The protocol: ``docs/live-consilium.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import socketio
from pydantic import BaseModel, ValidationError

from consilium.archive.access import Unreadable
from consilium.errors import DomainError, NotFound
from consilium.identity.policy import Principal
from consilium.identity.web import client_address
from consilium.live import events as ev
from consilium.live import sessions
from consilium.live.connection import Connection, Refusal
from consilium.live.events import NAMESPACE, ChangeKind
from consilium.live.feed import RESUME_MAX, Feed, Participant, room_of
from consilium.live.hub import LiveHub
from consilium.live.mark_events import MarkEvents
from consilium.live.models import SessionStatus
from consilium.live.render_share import SessionRender
from consilium.live.sequencer import Draft, last_seq_of, load_changes
from consilium.render.service import RenderService

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


Handler = Callable[[Connection, Participant, Any], Awaitable[dict[str, Any]]]


class ConsiliumNamespace:
    def __init__(self, sio: Any, hub: LiveHub,
                 authenticate: Callable[[dict[str, Any], Any], Awaitable[Principal | None]],
                 render: Callable[[], RenderService]) -> None:
        self.sio = sio
        self.hub = hub
        self.ctx = hub.ctx
        self.authenticate = authenticate
        self.render = render
        self.connections: dict[str, Connection] = {}
        hub.on_expel = self._expelled

    def register(self) -> None:
        on = self.sio.on
        on("connect", self.connect, namespace=NAMESPACE)
        on("disconnect", self.disconnect, namespace=NAMESPACE)
        on(ev.EVT_JOIN, self._event(ev.EVT_JOIN, ev.Join, self.join, joined=False),
           namespace=NAMESPACE)
        table: list[tuple[str, type[BaseModel], Handler]] = [
            (ev.EVT_LEAVE, ev.Leave, self.leave),
            (ev.EVT_VIEW, ev.ViewChange, self.view),
            (ev.EVT_POINTER, ev.PointerMove, self.pointer),
            (ev.EVT_CHAT, ev.ChatSend, self.chat),
            (ev.EVT_HAND_RAISE, ev.HandChange, self.hand_raise),
            (ev.EVT_HAND_LOWER, ev.HandChange, self.hand_lower),
            (ev.EVT_CONTROL_REQUEST, ev.ControlRequest, self.control_request),
            (ev.EVT_CONTROL_WITHDRAW, ev.ControlRequest, self.control_withdraw),
            (ev.EVT_CONTROL_GRANT, ev.ControlGrant, self.control_grant),
            (ev.EVT_CONTROL_TAKE, ev.ControlRequest, self.control_take),
            (ev.EVT_END, ev.SessionEnd, self.end),
            (ev.EVT_RENDER_FOLLOW, ev.RenderFollow, self.render_follow),
            (ev.EVT_PROTOCOL_DRAFT, ev.ProtocolDraft, self.protocol_draft),
        ]
        marks = MarkEvents(self)
        table += [(ev.EVT_MARK_PUT, ev.MarkPut, marks.put),
                  (ev.EVT_MARK_DELETE, ev.MarkDelete, marks.delete),
                  (ev.EVT_MARK_DRAWING, ev.MarkDrawing, marks.drawing)]
        for name, model, handler in table:
            on(name, self._event(name, model, handler), namespace=NAMESPACE)

    # -- connections --------------------------------------------------------------------------

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        principal = await self.authenticate(environ, auth)
        if principal is None:
            raise socketio.exceptions.ConnectionRefusedError("authentication required")
        await self.hub.start()
        source = client_address(environ.get("asgi.scope", {}))
        self.connections[sid] = Connection(sid, principal, source)
        return True

    async def disconnect(self, sid: str, _reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        if conn is None:
            return
        async with conn.lock:
            for participant in list(conn.joined.values()):
                await self._part(conn, participant, "disconnected")

    def _expelled(self, participant: Participant) -> None:
        conn = self.connections.get(participant.sid)
        if conn is not None and conn.joined.get(participant.session_id) is participant:
            del conn.joined[participant.session_id]

    # -- the one way in ------------------------------------------------------------------------

    def _event(self, name: str, model: type[M], handler: Any, joined: bool = True
               ) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def handle(sid: str, data: Any = None) -> dict[str, Any]:
            conn = self.connections.get(sid)
            if conn is None:
                return Refusal(401, "not connected").ack()
            async with conn.lock:
                try:
                    return await self._handle(conn, name, model, handler, joined, data)
                except Refusal as exc:
                    return exc.ack()
                except DomainError as exc:
                    return Refusal(exc.status, exc.message, exc.reason).ack()
                except Exception:
                    log.exception("%s failed", name)
                    return Refusal(500, "internal error; see the server log").ack()
        return handle

    async def _handle(self, conn: Connection, name: str, model: type[M], handler: Any,
                      joined: bool, data: Any) -> dict[str, Any]:
        try:
            ref = ev.SessionRef.model_validate(data)
        except ValidationError as exc:
            raise Refusal(400, f"bad request: {_first_error(exc)}", "parameter") from exc
        participant = conn.joined.get(ref.session_id)
        if participant is None:
            await self._check(conn, name, ref.session_id)
            if joined:
                raise Refusal(409, "join the session first", "not-joined")
        try:
            message = model.model_validate(data)
        except ValidationError as exc:
            raise Refusal(400, f"bad request: {_first_error(exc)}", "parameter") from exc
        if joined:
            return await handler(conn, participant, message)  # type: ignore[no-any-return]
        return await handler(conn, message)  # type: ignore[no-any-return]

    async def _check(self, conn: Connection, name: str, session_id: str) -> None:
        try:
            await anyio.to_thread.run_sync(sessions.detail, self.ctx, conn.principal,
                                           session_id)
        except NotFound as exc:
            self._refused(conn, name, session_id, exc)

    def _refused(self, conn: Connection, name: str, session_id: str, exc: NotFound) -> None:
        if not exc.audited:
            sessions.refused(self.ctx, conn.reader().actor, name, session_id, exc)
        raise Refusal(404, sessions.NOT_FOUND, "not-found")

    # -- joining and leaving -------------------------------------------------------------------

    async def join(self, conn: Connection, message: ev.Join) -> dict[str, Any]:
        if not conn.allow():
            raise Refusal(429, "too many requests; slow down", "rate")
        reader = conn.reader()
        try:
            admission = await anyio.to_thread.run_sync(sessions.admit, self.ctx, reader,
                                                       message.session_id)
        except (NotFound, Unreadable) as exc:
            self._refused(conn, ev.EVT_JOIN, message.session_id, exc)
        feed = await self.hub.feed(message.session_id)
        participant = conn.joined.get(message.session_id)
        fresh = participant is None
        if participant is None:
            participant = Participant(conn.sid, message.session_id, admission.subject,
                                      admission.name, admission.institution,
                                      admission.role.value, uuid.uuid4().hex[:16], reader,
                                      admission.until)
            await self.sio.enter_room(conn.sid, room_of(message.session_id),
                                      namespace=NAMESPACE)
            feed.participants[conn.sid] = participant
            conn.joined[message.session_id] = participant
        answer: dict[str, Any] = {"ok": True, "you": {
            "subject": participant.subject, "role": participant.role,
            "connection": participant.connection}}
        answer.update(await self._catch_up(feed, message.last_seq))
        if fresh and admission.status != SessionStatus.ENDED:
            await self.hub.record(Draft(message.session_id, ChangeKind.MEMBER_JOINED,
                                        participant.subject, {
                "subject": participant.subject, "name": participant.name,
                "institution": participant.institution, "connection": participant.connection}))
            await anyio.to_thread.run_sync(sessions.seen, self.ctx, message.session_id,
                                           participant.subject)
        return answer

    async def _catch_up(self, feed: Feed, last_seq: int | None) -> dict[str, Any]:
        """``seq`` and the changes after ``last_seq``, or a snapshot; read at one moment, after
        the connection entered the room (so everything later reaches it as a change)."""
        if last_seq is not None and last_seq > feed.seq:
            deadline = time.monotonic() + 1.0  # this process's feed may trail another's
            while last_seq > feed.seq and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if last_seq > feed.seq:
                known = await anyio.to_thread.run_sync(last_seq_of, self.ctx.engine,
                                                       feed.session_id)
                if last_seq > known:  # the database lost what the client had: start afresh
                    last_seq = None
        seq = feed.seq
        if last_seq is None or seq - last_seq > RESUME_MAX:
            return {"seq": seq, "snapshot": feed.snapshot()}
        if last_seq >= seq:
            return {"seq": seq, "changes": []}  # the rest is on its way to this process
        kept = feed.changes_after(last_seq)
        if kept is None:
            kept = await anyio.to_thread.run_sync(load_changes, self.ctx.engine,
                                                  feed.session_id, last_seq, seq)
        return {"seq": seq, "changes": kept}

    async def leave(self, conn: Connection, participant: Participant, _m: ev.Leave
                    ) -> dict[str, Any]:
        await self._part(conn, participant, "left")
        return {"ok": True}

    async def _part(self, conn: Connection, participant: Participant, reason: str) -> None:
        conn.joined.pop(participant.session_id, None)
        feed = self.hub.feeds.get(participant.session_id)
        if feed is not None:
            feed.participants.pop(conn.sid, None)
            if feed.render is not None:
                feed.render.drop(conn.sid)
        await self.sio.leave_room(conn.sid, room_of(participant.session_id),
                                  namespace=NAMESPACE)
        await self.hub.record(Draft(participant.session_id, ChangeKind.MEMBER_LEFT,
                                    participant.subject, {
            "subject": participant.subject, "connection": participant.connection,
            "reason": reason}))

    # -- changes ---------------------------------------------------------------------------------

    # state, durable and of_case are what the handlers of every event (also those of
    # :mod:`.mark_events`) do with a session: read its state, make a durable change under the
    # connection's rate, check that a series is one of the case's

    async def state(self, participant: Participant) -> dict[str, Any]:
        feed = await self.hub.feed(participant.session_id)
        assert feed.state is not None
        return feed.state

    async def durable(self, conn: Connection, participant: Participant, kind: ChangeKind,
                      payload: dict[str, Any], refused: str) -> dict[str, Any]:
        if not conn.allow():
            raise Refusal(429, "too many changes; slow down", "rate")
        change = await self.hub.record(Draft(participant.session_id, kind,
                                             participant.subject, payload))
        if change is None:
            raise Refusal(409, refused, "state")
        return {"ok": True, "seq": change.seq}

    async def view(self, conn: Connection, participant: Participant, m: ev.ViewChange
                   ) -> dict[str, Any]:
        state = await self.state(participant)
        if state["status"] != "open":
            raise Refusal(409, "the session is not open", "state")
        if state["presenter"] != participant.subject:
            raise Refusal(403, "only the presenter changes the view", "not-presenter")
        kind = ChangeKind(m.kind)
        try:
            view = ev.VIEW_MODELS[kind].model_validate(m.state)
        except ValidationError as exc:
            raise Refusal(400, f"bad view state: {_first_error(exc)}", "parameter") from exc
        pairs = ([(v.study_uid, v.series_uid) for v in view.viewports]
                 if isinstance(view, ev.StackView) else
                 [(view.study_uid, view.series_uid)]  # type: ignore[attr-defined]
                 )
        for study_uid, series_uid in pairs:
            await self.of_case(participant, series_uid, study_uid)
        self.hub.offer(Draft(participant.session_id, kind, participant.subject,
                             {"state": view.model_dump(mode="json"), "final": m.final}))
        return {"ok": True}

    async def of_case(self, participant: Participant, series_uid: str,
                      study_uid: str | None = None) -> None:
        feed = await self.hub.feed(participant.session_id)
        found = await feed.series_study(series_uid)
        if found is None or (study_uid is not None and found != study_uid):
            raise Refusal(400, f"series {series_uid} is not one of the case's", "not-in-case")

    async def pointer(self, conn: Connection, participant: Participant, m: ev.PointerMove
                      ) -> dict[str, Any]:
        state = await self.state(participant)
        if state["status"] != "open":
            raise Refusal(409, "the session is not open", "state")
        if m.visible:
            if m.series_uid is None:
                raise Refusal(400, "a visible pointer names its series_uid", "parameter")
            await self.of_case(participant, m.series_uid)
        self.hub.offer(Draft(participant.session_id, ChangeKind.POINTER, participant.subject,
                             m.model_dump(mode="json", exclude={"session_id"})))
        return {"ok": True}

    async def chat(self, conn: Connection, participant: Participant, m: ev.ChatSend
                   ) -> dict[str, Any]:
        text = m.text.strip()
        if not text:
            raise Refusal(400, "the message is empty", "parameter")
        return await self.durable(conn, participant, ChangeKind.CHAT_MESSAGE,
                                   {"text": text, "name": participant.name},
                                   "the session is not open")

    async def hand_raise(self, conn: Connection, participant: Participant, m: ev.HandChange
                         ) -> dict[str, Any]:
        if m.subject not in (None, participant.subject):
            raise Refusal(403, "one raises one's own hand", "not-yours")
        return await self.durable(conn, participant, ChangeKind.HAND_RAISED,
                                   {"subject": participant.subject}, "the session is not open")

    async def hand_lower(self, conn: Connection, participant: Participant, m: ev.HandChange
                         ) -> dict[str, Any]:
        subject = m.subject or participant.subject
        if subject != participant.subject:
            state = await self.state(participant)
            if participant.subject not in (state["presenter"], state["chair"]):
                raise Refusal(403, "only the presenter or the chair lowers another's hand",
                              "not-presenter")
        return await self.durable(conn, participant, ChangeKind.HAND_LOWERED,
                                   {"subject": subject}, "the session is not open")

    async def control_request(self, conn: Connection, participant: Participant,
                              _m: ev.ControlRequest) -> dict[str, Any]:
        state = await self.state(participant)
        if state["presenter"] == participant.subject:
            raise Refusal(409, "you are presenting", "presenter")
        return await self.durable(conn, participant, ChangeKind.CONTROL_REQUESTED,
                                   {"subject": participant.subject}, "the session is not open")

    async def control_withdraw(self, conn: Connection, participant: Participant,
                               _m: ev.ControlRequest) -> dict[str, Any]:
        return await self.durable(conn, participant, ChangeKind.CONTROL_WITHDRAWN,
                                   {"subject": participant.subject}, "the session is not open")

    async def control_grant(self, conn: Connection, participant: Participant,
                            m: ev.ControlGrant) -> dict[str, Any]:
        state = await self.state(participant)
        if participant.subject not in (state["presenter"], state["chair"]):
            raise Refusal(403, "only the presenter or the chair hands over control",
                          "not-presenter")
        member = state["members"].get(m.subject)
        if member is None or not member["online"]:
            raise Refusal(400, f"{m.subject!r} is not in the session now", "not-member")
        return await self.durable(conn, participant, ChangeKind.CONTROL_GRANTED,
                                   {"subject": m.subject, "name": member["name"],
                                    "by": participant.subject},
                                   "control cannot be handed over now")

    async def control_take(self, conn: Connection, participant: Participant,
                           _m: ev.ControlRequest) -> dict[str, Any]:
        state = await self.state(participant)
        if participant.subject != state["chair"]:
            raise Refusal(403, "only the chair takes control", "not-chair")
        return await self.durable(conn, participant, ChangeKind.CONTROL_GRANTED,
                                   {"subject": participant.subject, "name": participant.name,
                                    "by": participant.subject, "taken": True},
                                   "control cannot be taken now")

    async def end(self, conn: Connection, participant: Participant, _m: ev.SessionEnd
                  ) -> dict[str, Any]:
        outcome = await anyio.to_thread.run_sync(
            lambda: sessions.end(self.ctx, conn.principal, participant.session_id,
                                 conn.reader().actor))
        await self.hub.announce(outcome)
        return {"ok": True, "seq": outcome.changes[-1].seq if outcome.changes else None}

    async def render_follow(self, conn: Connection, participant: Participant,
                            m: ev.RenderFollow) -> dict[str, Any]:
        feed = await self.hub.feed(participant.session_id)
        if feed.render is None:
            if not m.views:
                return {"ok": True, "views": []}
            feed.render = SessionRender(participant.session_id, self.render(), self.sio)
            assert feed.state is not None
            for kind, part in ((ChangeKind.VIEW_MPR, "mpr"), (ChangeKind.VIEW_VOLUME, "volume")):
                view = feed.state["view"][part]
                if view is not None:
                    feed.render.on_view(kind, {"state": view, "final": True}, feed.seq)
        feed.render.follow(conn.sid, participant.reader, list(m.views))
        return {"ok": True, "views": list(m.views)}


    async def protocol_draft(self, _conn: Connection, participant: Participant,
                             m: ev.ProtocolDraft) -> dict[str, Any]:
        """The protocol's text as its editor types it: coalesced like a view change (the
        fold takes it only from the editor, on the newest version: :mod:`.protocol_fold`)."""
        state = await self.state(participant)
        protocol = state.get("protocol") or {"status": "draft", "editor": state["chair"],
                                             "version": 0}
        if protocol["status"] != "draft" or state["status"] == "scheduled":
            raise Refusal(409, "the protocol is not being written", "state")
        if protocol["editor"] != participant.subject:
            raise Refusal(403, "only the one who holds the pen edits", "not-editor")
        self.hub.offer(Draft(participant.session_id, ChangeKind.PROTOCOL_DRAFT,
                             participant.subject, {"version": m.version, "text": m.text}))
        return {"ok": True}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
