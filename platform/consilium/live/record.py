"""What a session leaves in its case's timeline (:func:`consilium.consult.workflow.timeline`).

As it happens: that it was scheduled, opened. When it ends, read from its record of changes:
who was there when (joins of one person less than :data:`REJOIN_GAP` apart are one stay: a
reload is not a new arrival), who presented and which series they showed, every chat message,
and the end. Each is a case event of kind ``consilium`` whose detail says which
(``{"event": "joined" | "presented" | "chat" | "scheduled" | "opened" | "ended", "session"...}``),
at the time it happened, so the timeline sorts it among the case's other events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from consilium.consult.models import CaseEvent, EventKind
from consilium.live.events import VIEW_KINDS, ChangeKind
from consilium.live.models import ConsiliumSession
from consilium.live.sequencer import load_changes

REJOIN_GAP = timedelta(seconds=60)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Entry:
    at: datetime
    actor: str
    name: str
    institution: str
    detail: dict[str, Any]


@dataclass
class _Stay:
    name: str
    institution: str
    since: datetime
    until: datetime | None = None
    connections: set[str] = field(default_factory=set)


def summary(session_id: str, changes: list[dict[str, Any]]) -> list[Entry]:
    """The timeline entries of a whole session from its changes (in seq order)."""
    people: dict[str, tuple[str, str]] = {}
    stays: dict[str, list[_Stay]] = {}
    entries: list[Entry] = []
    presenter: tuple[str, datetime] | None = None
    shown: list[str] = []

    def close_presenting(at: datetime) -> None:
        if presenter is None:
            return
        subject, since = presenter
        name, institution = people.get(subject, ("", ""))
        entries.append(Entry(since, subject, name, institution, {
            "event": "presented", "session": session_id, "until": _iso(at),
            "series": list(dict.fromkeys(shown))}))

    for change in changes:
        kind, actor, payload = change["kind"], change["actor"], change["payload"]
        at = _time(change["at"])
        if kind == ChangeKind.SESSION_SCHEDULED:
            chair = payload.get("chair") or {}
            people[chair.get("subject", "")] = (chair.get("name", ""),
                                                chair.get("institution", ""))
        elif kind in (ChangeKind.MEMBER_INVITED, ChangeKind.MEMBER_JOINED):
            people.setdefault(payload["subject"], (payload.get("name", ""),
                                                   payload.get("institution", "")))
        if kind == ChangeKind.MEMBER_JOINED:
            subject = payload["subject"]
            mine = stays.setdefault(subject, [])
            last = mine[-1] if mine else None
            if last is not None and (last.until is None or at - last.until < REJOIN_GAP):
                last.until = None
            else:
                name, institution = people[subject]
                last = _Stay(name, institution, at)
                mine.append(last)
            last.connections.add(payload["connection"])
        elif kind == ChangeKind.MEMBER_LEFT:
            for stay in stays.get(payload["subject"], [])[-1:]:
                stay.connections.discard(payload["connection"])
                if not stay.connections:
                    stay.until = at
        elif kind == ChangeKind.SESSION_OPENED:
            presenter, shown = (_chair(changes), at), []
        elif kind == ChangeKind.CONTROL_GRANTED:
            close_presenting(at)
            presenter, shown = (payload["subject"], at), []
        elif kind in {k.value for k in VIEW_KINDS}:
            state = payload.get("state") or {}
            for uid in [v.get("series_uid") for v in state.get("viewports", [])] + [
                    state.get("series_uid")]:
                if uid:
                    shown.append(str(uid))
        elif kind == ChangeKind.CHAT_MESSAGE:
            name, institution = people.get(actor, (payload.get("name", ""), ""))
            entries.append(Entry(at, actor, name, institution, {
                "event": "chat", "session": session_id, "text": payload["text"]}))
        elif kind == ChangeKind.SESSION_ENDED:
            close_presenting(at)
            presenter = None
            for mine in stays.values():
                for stay in mine:
                    stay.until = stay.until or at
            name, institution = people.get(actor, ("", ""))
            entries.append(Entry(at, actor, name, institution,
                                 {"event": "ended", "session": session_id}))
    for subject, mine in stays.items():
        for stay in mine:
            entries.append(Entry(stay.since, subject, stay.name, stay.institution, {
                "event": "joined", "session": session_id,
                "until": _iso(stay.until) if stay.until else None}))
    entries.sort(key=lambda e: e.at)
    return entries


def _chair(changes: list[dict[str, Any]]) -> str:
    for change in changes:
        if change["kind"] == ChangeKind.SESSION_SCHEDULED:
            return str((change["payload"].get("chair") or {}).get("subject", ""))
    return ""


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def write_case_events(engine: Engine, row: ConsiliumSession,
                      changes: list[dict[str, Any]] | None) -> None:
    """Case events of ``changes`` as they happen (scheduled, opened), or with None, the
    summary of the ended session from its record."""
    if changes is None:
        entries = summary(row.id, load_changes(engine, row.id, after=0))
    else:
        entries = []
        for change in changes:
            event = {ChangeKind.SESSION_SCHEDULED.value: "scheduled",
                     ChangeKind.SESSION_OPENED.value: "opened"}.get(change["kind"])
            if event is not None:
                detail: dict[str, Any] = {"event": event, "session": row.id}
                if event == "scheduled":
                    detail.update(title=row.title, scheduled_at=change["payload"].get(
                        "scheduled_at"))
                entries.append(Entry(_time(change["at"]), change["actor"], row.chair_name,
                                     row.chair_institution, detail))
    if not entries:
        return
    with Session(engine) as db:
        for entry in entries:
            db.add(CaseEvent(case_id=row.case_id, at=entry.at, kind=EventKind.CONSILIUM.value,
                             actor=entry.actor, actor_name=entry.name,
                             actor_institution=entry.institution,
                             detail=json.dumps(entry.detail, ensure_ascii=False)))
        db.commit()
