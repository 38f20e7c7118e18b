"""What the sequencer does for the mark changes of a session, in the transaction that numbers
them: a session's marks are the case's marks (:mod:`consilium.consult.annotations`).

* ``session.opened`` carries the case's marks at that moment: the session's state starts with
  them, so a latecomer's snapshot and a replay hold every mark the doctors saw.
* ``mark.put`` / ``mark.deleted`` get their seq only when the mark is new or the actor's own
  (checked in the transaction, so that two web processes cannot both pass for one id), and are
  written into the case's table with that seq: the case keeps what the session shows, and the
  last change of a mark in the session's order is the one kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, select
from sqlmodel import col

from consilium.consult.annotations import live_mark_allowed, marks_at_opening, store_live_mark
from consilium.live.events import ChangeKind
from consilium.live.models import ConsiliumSession


class Draft(Protocol):
    """What is read of the sequencer's change before its seq (:class:`.sequencer.Draft`)."""

    @property
    def session_id(self) -> str: ...
    @property
    def kind(self) -> ChangeKind: ...
    @property
    def actor(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def at(self) -> datetime: ...


class Change(Protocol):
    """What is read of the numbered change (:class:`.sequencer.Change`)."""

    @property
    def seq(self) -> int: ...
    @property
    def payload(self) -> dict[str, Any]: ...

MARK_WRITES = frozenset({ChangeKind.MARK_PUT, ChangeKind.MARK_DELETED})


def _case_of(db: Connection, session_id: str) -> int | None:
    found = db.execute(select(col(ConsiliumSession.case_id)).where(
        col(ConsiliumSession.id) == session_id)).scalar_one_or_none()
    return None if found is None else int(found)


def payload_before(db: Connection, draft: Draft) -> dict[str, Any] | None:
    """The payload the change is written with, or None when it may not have a seq."""
    if draft.kind is ChangeKind.SESSION_OPENED:
        case_id = _case_of(db, draft.session_id)
        if case_id is None:
            return draft.payload
        return {**draft.payload, "marks": marks_at_opening(db, case_id)}
    if draft.kind not in MARK_WRITES:
        return draft.payload
    case_id = _case_of(db, draft.session_id)
    if case_id is None:
        return None
    deleting = draft.kind is ChangeKind.MARK_DELETED
    mark_id = str(draft.payload["id"] if deleting else draft.payload["mark"]["id"])
    return draft.payload if live_mark_allowed(db, case_id, mark_id, draft.actor,
                                              deleting) else None


def store_after(db: Connection, draft: Draft, change: Change) -> None:
    """A numbered mark change into the case's table (same transaction)."""
    if draft.kind not in MARK_WRITES:
        return
    case_id = _case_of(db, draft.session_id)
    if case_id is not None:
        store_live_mark(db, case_id, change.payload, draft.actor, draft.session_id,
                        change.seq, draft.at, draft.kind is ChangeKind.MARK_DELETED)
