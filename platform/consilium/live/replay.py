"""Replaying a session from its record: the state at any seq, and a timeline to step through.

The record (:mod:`.sequencer`) is the whole session, so the state at seq ``n`` is the fold
(:mod:`.state`) of its changes up to ``n``: exactly what every participant had after applying
change ``n`` (tested that way). Folding a long session from the start for each step of a
scrubbing reader would cost the whole record each time (a two-hour session with a presenter
who scrolls is some 10^5 coalesced changes), so :class:`Replays` keeps checkpoints: the folded
state every :data:`CHECKPOINT_EVERY` changes of the sessions replayed lately, as compact JSON,
within :data:`CHECKPOINT_BYTES` per session (beyond it every other checkpoint is dropped). A
state then costs at most a checkpoint's parse and that many changes' fold.

The timeline lists what a reader steps through, in order, with who did it: every change but
the pointer, the text being typed and the stroke being drawn (``mark.drawing``: its end is the
``mark.put`` that keeps it); a run of view changes of one kind by one presenter (a scroll, a
window drag) is one entry from its first seq ``seq`` to its last ``until``. A mark's entry names
the mark (``id``, ``kind``, what it measured); the marks present at any position are the
state's ``annotations``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from consilium.live.events import VIEW_KINDS, ChangeKind
from consilium.live.sequencer import load_changes, load_state
from consilium.live.state import State, apply, empty_state

CHECKPOINT_EVERY = 500
CHECKPOINT_BYTES = 16 * 1024 * 1024
SESSIONS_KEPT = 8
PAGE = 2000
TIMELINE_MAX = 20_000
"""Entries of a timeline (beyond, the answer says ``truncated``)."""

_SKIPPED = {ChangeKind.POINTER.value, ChangeKind.PROTOCOL_DRAFT.value,
            ChangeKind.MARK_DRAWING.value}
_MARKS = {ChangeKind.MARK_PUT.value, ChangeKind.MARK_DELETED.value}
_VIEWS = {k.value for k in VIEW_KINDS}


@dataclass
class _Checkpoints:
    every: int = field(default_factory=lambda: CHECKPOINT_EVERY)
    points: list[tuple[int, str]] = field(default_factory=list)  # (seq, state JSON), by seq
    size: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, state: State) -> None:
        text = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
        self.points.append((int(state["seq"]), text))
        self.size += len(text)
        while self.size > CHECKPOINT_BYTES and len(self.points) > 1:
            self.every *= 2
            self.points = self.points[::2]
            self.size = sum(len(t) for _, t in self.points)


class Replays:
    """States at any seq of the sessions replayed lately (one per web process)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: OrderedDict[str, _Checkpoints] = OrderedDict()
        self._lock = threading.Lock()

    def _of(self, session_id: str) -> _Checkpoints:
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None:
                found = self._sessions[session_id] = _Checkpoints()
                while len(self._sessions) > SESSIONS_KEPT:
                    self._sessions.popitem(last=False)
            self._sessions.move_to_end(session_id)
            return found

    def state_at(self, session_id: str, seq: int) -> State:
        """The session's state after change ``seq`` (its newest one if ``seq`` is beyond)."""
        marks = self._of(session_id)
        with marks.lock:
            start = empty_state(session_id)
            for point_seq, text in reversed(marks.points):
                if point_seq <= seq:
                    start = json.loads(text)
                    break
            state = start
            after = int(state["seq"])
            newest = int(marks.points[-1][0]) if marks.points else 0
            while after < seq:
                page = load_changes(self.engine, session_id, after, seq, limit=PAGE)
                if not page:
                    break
                for change in page:
                    apply(state, change)
                    at = int(change["seq"])
                    if at > newest and at % marks.every == 0:
                        marks.add(state)
                        newest = at
                after = int(page[-1]["seq"])
            return state


def names_of(engine: Engine, session_id: str) -> dict[str, str]:
    """Who is who in a session (subject -> name), from its current state."""
    state, _ = load_state(engine, session_id)
    return {subject: str(m.get("name", "")) for subject, m in state["members"].items()}


def _mark_summary(kind: str, payload: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """Which mark a mark change is, and what it measured (``kinds``: the kind of every mark put
    so far, by id, for a deletion that names only the id)."""
    if kind == ChangeKind.MARK_DELETED.value:
        mark_id = str(payload.get("id", ""))
        return {"mark_id": mark_id, "mark_kind": kinds.get(mark_id, "")}
    mark = payload.get("mark") or {}
    mark_id, mark_kind = str(mark.get("id", "")), str(mark.get("kind", ""))
    kinds[mark_id] = mark_kind
    measured = {k: v for k, v in (mark.get("measured") or {}).items() if v is not None}
    return {"mark_id": mark_id, "mark_kind": mark_kind, "measured": measured,
            "series_uid": mark.get("series_uid") or (mark.get("image") or {}).get("series_uid")}


def _summary(kind: str, payload: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """What a timeline entry shows of its change (the rest is in the state at its seq)."""
    if kind == ChangeKind.CHAT_MESSAGE.value:
        return {"text": payload.get("text", "")}
    if kind in _VIEWS:
        state = payload.get("state") or {}
        if kind == ChangeKind.VIEW_STACK.value:
            ports = state.get("viewports") or [{}]
            port = ports[min(int(state.get("active", 0)), len(ports) - 1)]
            return {"series_uid": port.get("series_uid"), "image_index": port.get("image_index"),
                    "voi": port.get("voi"), "layout": state.get("layout")}
        return {"series_uid": state.get("series_uid")}
    subject = payload.get("subject")
    if isinstance(subject, str):
        return {"subject": subject, "name": payload.get("name") or names.get(subject, ""),
                **({"agree": payload["agree"], "dissent": payload.get("dissent", "")}
                   if "agree" in payload else {})}
    if "version" in payload:
        return {"version": payload["version"]}
    return {}


def timeline(engine: Engine, session_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The steps of a session: ``{seq, until, at, actor, name, kind, what}`` in seq order, and
    whether it was cut at :data:`TIMELINE_MAX` entries."""
    names = names_of(engine, session_id)
    entries: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}  # mark id -> kind, for the deletions
    after = 0
    while True:
        page = load_changes(engine, session_id, after, limit=PAGE)
        if not page:
            return entries, False
        for change in page:
            kind, actor = change["kind"], change["actor"]
            if kind == ChangeKind.SESSION_OPENED.value:
                kinds.update((str(m.get("id")), str(m.get("kind")))
                             for m in change["payload"].get("marks") or [])
            if kind in _SKIPPED:
                continue
            last = entries[-1] if entries else None
            if (kind in _VIEWS and last is not None and last["kind"] == kind
                    and last["actor"] == actor):
                last["until"] = change["seq"]
                last["what"] = _summary(kind, change["payload"], names)
                continue
            if len(entries) >= TIMELINE_MAX:
                return entries, True
            entries.append({"seq": change["seq"], "until": change["seq"], "at": change["at"],
                            "actor": actor, "name": names.get(actor, ""), "kind": kind,
                            "what": _mark_summary(kind, change["payload"], kinds)
                            if kind in _MARKS else _summary(kind, change["payload"], names)})
        after = int(page[-1]["seq"])

