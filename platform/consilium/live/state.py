"""The session's state: one JSON document, the fold of its changes in seq order.

``apply(state, change)`` is the only way the state changes, on the server (snapshots, each
process's feed) and, in the same terms, in the browser. So a snapshot at seq ``n`` plus the
changes after ``n`` is exactly the current state (tested that way). The fold is total: a change
that makes no sense for the state (a member leaving who is not there) changes nothing, and
what a change may do was decided before it got its seq (:mod:`.sequencer`).

The document::

    {"session_id", "case_id", "title", "status", "scheduled_at", "opened_at", "ended_at",
     "chair", "presenter",
     "members": {subject: {"name", "institution", "role", "invited", "online",
                           "connections": [...], "hand"}},
     "control_requests": [subject, ...],
     "view": {"stack": {...} | null, "mpr": {...} | null, "volume": {...} | null},
     "pointers": {subject: {"series_uid", "image_id", "x", "y", "seq"}},
     "chat": [{"seq", "at", "subject", "name", "text"}, ...],   # the latest CHAT_KEPT
     "annotations": [Mark, ...],   # the case's marks: at opening, then mark.put/deleted
     "protocol": {...},   # from the first protocol change on: see :mod:`.protocol_fold`
     "drawing": {subject: Mark},   # the stroke each participant is drawing now
     "seq"}

``Mark`` is :class:`consilium.archive.marks.Mark` as JSON. Snapshots written before
``drawing`` existed lack it: the handlers add it when they need it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from consilium.live import protocol_fold
from consilium.live.events import ChangeKind

CHAT_KEPT = 500
"""Chat messages kept in the state (all of them stay in the record)."""

State = dict[str, Any]


def empty_state(session_id: str) -> State:
    return {
        "session_id": session_id, "case_id": None, "title": "", "status": "scheduled",
        "scheduled_at": None, "opened_at": None, "ended_at": None, "chair": "",
        "presenter": "", "members": {}, "control_requests": [],
        "view": {"stack": None, "mpr": None, "volume": None}, "pointers": {}, "chat": [],
        "annotations": [], "drawing": {}, "seq": 0,
    }


def _member(state: State, subject: str, payload: dict[str, Any], role: str = "member",
            invited: bool = False) -> dict[str, Any]:
    members: dict[str, dict[str, Any]] = state["members"]
    found = members.get(subject)
    if found is None:
        found = {"name": payload.get("name", ""), "institution": payload.get("institution", ""),
                 "role": role, "invited": invited, "online": False, "connections": [],
                 "hand": False}
        members[subject] = found
    return found


def _offline(state: State, subject: str) -> None:
    """What a member who has no connection left no longer holds: the pointer, the stroke."""
    state["pointers"].pop(subject, None)
    state.setdefault("drawing", {}).pop(subject, None)


def apply(state: State, change: dict[str, Any]) -> State:
    """Apply one change (``{"seq", "at", "actor", "kind", "payload"}``) in place; return it.
    A change at or below the state's seq is ignored (it is already in)."""
    seq = int(change["seq"])
    if seq <= state["seq"]:
        return state
    state["seq"] = seq
    kind, actor, payload = change["kind"], change["actor"], change.get("payload") or {}
    try:
        known = ChangeKind(kind)
    except ValueError:
        return state  # a kind of a newer server: its seq counts, nothing else
    handler = _HANDLERS.get(known)
    if handler is not None:
        handler(state, seq, change["at"], actor, payload)
    return state


def fold(state: State, changes: Iterable[dict[str, Any]]) -> State:
    for change in changes:
        apply(state, change)
    return state


def clone(state: State) -> State:
    return copy.deepcopy(state)


# -- the handlers, one per kind ------------------------------------------------------------------


def _scheduled(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    chair = p.get("chair") or {}
    state.update(case_id=p.get("case_id"), title=p.get("title", ""),
                 scheduled_at=p.get("scheduled_at"), chair=chair.get("subject", ""))
    _member(state, chair.get("subject", ""), chair, role="chair")


def _opened(state: State, _seq: int, at: str, _actor: str, p: dict[str, Any]) -> None:
    state.update(status="open", opened_at=at, presenter=state["chair"])
    if "marks" in p:  # the case's marks when it opened (sessions of before carry none)
        state["annotations"] = list(p["marks"])


def _ended(state: State, _seq: int, at: str, _actor: str, _p: dict[str, Any]) -> None:
    state.update(status="ended", ended_at=at, control_requests=[], pointers={}, drawing={})
    for member in state["members"].values():
        member.update(online=False, connections=[], hand=False)


def _invited(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    member = _member(state, p["subject"], p, invited=True)
    member["invited"] = True


def _uninvited(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    subject = p["subject"]
    state["members"].pop(subject, None)
    _offline(state, subject)
    if subject in state["control_requests"]:
        state["control_requests"].remove(subject)


def _joined(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    member = _member(state, p["subject"], p)
    if p["connection"] not in member["connections"]:
        member["connections"].append(p["connection"])
    member["online"] = True


def _left(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    member = state["members"].get(p["subject"])
    if member is None:
        return
    if p["connection"] in member["connections"]:
        member["connections"].remove(p["connection"])
    member["online"] = bool(member["connections"])
    if not member["online"]:
        _offline(state, p["subject"])


def _requested(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    if p["subject"] not in state["control_requests"]:
        state["control_requests"].append(p["subject"])


def _withdrawn(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    if p["subject"] in state["control_requests"]:
        state["control_requests"].remove(p["subject"])


def _granted(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    state["presenter"] = p["subject"]
    _withdrawn(state, _seq, _at, _actor, p)


def _hand(raised: bool) -> Any:
    def handler(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
        member = state["members"].get(p["subject"])
        if member is not None:
            member["hand"] = raised
    return handler


def _chat(state: State, seq: int, at: str, actor: str, p: dict[str, Any]) -> None:
    chat: list[dict[str, Any]] = state["chat"]
    chat.append({"seq": seq, "at": at, "subject": actor, "name": p.get("name", ""),
                 "text": p["text"]})
    if len(chat) > CHAT_KEPT:
        del chat[: len(chat) - CHAT_KEPT]


def _view(part: str) -> Any:
    def handler(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
        state["view"][part] = p["state"]
    return handler


def _pointer(state: State, seq: int, _at: str, actor: str, p: dict[str, Any]) -> None:
    if not p.get("visible", True):
        state["pointers"].pop(actor, None)
        return
    state["pointers"][actor] = {"series_uid": p.get("series_uid"),
                                "image_id": p.get("image_id"), "x": p.get("x", 0.0),
                                "y": p.get("y", 0.0), "seq": seq}


def _mark_put(state: State, _seq: int, _at: str, actor: str, p: dict[str, Any]) -> None:
    mark = p["mark"]
    marks: list[dict[str, Any]] = state["annotations"]
    for index, found in enumerate(marks):
        if found.get("id") == mark.get("id"):
            marks[index] = mark
            break
    else:
        marks.append(mark)
    drawing = state.setdefault("drawing", {})
    if (drawing.get(actor) or {}).get("id") == mark.get("id"):
        del drawing[actor]


def _mark_deleted(state: State, _seq: int, _at: str, actor: str, p: dict[str, Any]) -> None:
    state["annotations"] = [m for m in state["annotations"] if m.get("id") != p["id"]]
    drawing = state.setdefault("drawing", {})
    if (drawing.get(actor) or {}).get("id") == p["id"]:
        del drawing[actor]


def _mark_drawing(state: State, _seq: int, _at: str, actor: str, p: dict[str, Any]) -> None:
    drawing = state.setdefault("drawing", {})
    if p.get("mark") is None:
        drawing.pop(actor, None)
    else:
        drawing[actor] = p["mark"]


_HANDLERS: dict[ChangeKind, Any] = {
    ChangeKind.SESSION_SCHEDULED: _scheduled,
    ChangeKind.SESSION_OPENED: _opened,
    ChangeKind.SESSION_ENDED: _ended,
    ChangeKind.MEMBER_INVITED: _invited,
    ChangeKind.MEMBER_UNINVITED: _uninvited,
    ChangeKind.MEMBER_JOINED: _joined,
    ChangeKind.MEMBER_LEFT: _left,
    ChangeKind.CONTROL_REQUESTED: _requested,
    ChangeKind.CONTROL_WITHDRAWN: _withdrawn,
    ChangeKind.CONTROL_GRANTED: _granted,
    ChangeKind.HAND_RAISED: _hand(True),
    ChangeKind.HAND_LOWERED: _hand(False),
    ChangeKind.CHAT_MESSAGE: _chat,
    ChangeKind.VIEW_STACK: _view("stack"),
    ChangeKind.VIEW_MPR: _view("mpr"),
    ChangeKind.VIEW_VOLUME: _view("volume"),
    ChangeKind.POINTER: _pointer,
    **protocol_fold.HANDLERS,
    ChangeKind.MARK_PUT: _mark_put,
    ChangeKind.MARK_DELETED: _mark_deleted,
    ChangeKind.MARK_DRAWING: _mark_drawing,
}
