"""The consilium's protocol: the decision written together, signed, closed, kept.

    draft ──submit──▶ signing ──close──▶ closed
      ▲                  │
      └─────reopen───────┘        (reopening voids the signatures given)

* **Writing.** One editor at a time: the chair holds the pen first and hands it to any member
  of the session (``protocol.pen``), or takes it back. The editor's text goes to everyone as it
  is typed (``protocol.draft``, coalesced, over the socket) and each save is a version (who,
  when, the text; ``protocol.saved``), made on the version the editor started from (a save on
  an older one is refused, 409: nothing is overwritten unseen).
* **Signing.** The chair puts one version to the participants (``protocol.signing``); each
  member of the session signs it, agreeing or dissenting with a text (``protocol.signed``:
  identity, institution, time). Signing again replaces one's signature.
* **Closing.** The chair closes it once at least one participant agreed (``protocol.closed``):
  the PDF (:mod:`.protocol_pdf`) is attached to the case with a case event, and written into the
  archive beside each study of the case as Encapsulated PDF and Basic Text SR
  (:mod:`.protocol_archive`).

Who: whoever may enter the session (:func:`consilium.live.sessions.detail`; the same 404 for
another's session and a missing one) may read the protocol; a member of the session's state
(the chair, an invitee, a party who joined) may hold the pen and sign. It may be written while
the session is open and after it ended. Each function checks, writes its rows and its change in
one transaction (the protocol row's conditional update makes concurrent requests safe) and
returns an :class:`~consilium.live.sessions.Outcome` for the adapter to deliver.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from consilium.errors import Conflict, Forbidden, InvalidInput, NotFound
from consilium.identity.policy import Principal
from consilium.live import sessions
from consilium.live.events import PROTOCOL_MAX, ChangeKind
from consilium.live.models import ConsiliumSession, SessionStatus
from consilium.live.protocol_models import (
    ArchivedProtocolPublic,
    Protocol,
    ProtocolArchived,
    ProtocolPublic,
    ProtocolSignature,
    ProtocolStatus,
    ProtocolVersion,
    SignaturePublic,
    VersionPublic,
    VersionText,
)
from consilium.live.sequencer import Change, Draft, append, read_state, utcnow
from consilium.live.sessions import LiveContext, Outcome

MAX_VERSIONS = 1000
"""Saves of one protocol (each is a row and a change; a consilium's decision needs far fewer)."""
DISSENT_MAX = 4000


def aware(value: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite gives them back without a zone)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def session_row(db: Session, session_id: str) -> ConsiliumSession:
    row = db.get(ConsiliumSession, session_id)
    if row is None:
        raise NotFound(sessions.NOT_FOUND)
    return row


def find_protocol(db: Session, row: ConsiliumSession, create: bool = False) -> Protocol | None:
    found = db.exec(select(Protocol).where(Protocol.session_id == row.id)).first()
    if found is None and create:
        found = Protocol(session_id=row.id, case_id=row.case_id,
                         status=ProtocolStatus.DRAFT.value, editor_subject=row.chair_subject,
                         editor_name=row.chair_name, created_at=utcnow())
        db.add(found)
        try:
            db.flush()
        except IntegrityError:  # another request made it first: take that one
            db.rollback()
            return db.exec(select(Protocol).where(Protocol.session_id == row.id)).one()
    return found


def append_change(db: Connection, draft: Draft) -> Change:
    change = append(db, draft)
    if change is None:
        raise Conflict("the session does not allow this now (it has not opened, or you are "
                       "not its chair)")
    return change


def claim(db: Session, protocol: Protocol, current: ProtocolStatus,
           at_version: int | None = None, **values: Any) -> None:
    """Update the protocol row only if it is still as read (status and version): two requests
    that read the same row cannot both pass."""
    conditions = [col(Protocol.id) == protocol.id, col(Protocol.status) == current.value]
    if at_version is not None:
        conditions.append(col(Protocol.version) == at_version)
    done = db.execute(update(Protocol).where(*conditions).values(
        **(values or {"status": current.value})))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the protocol changed meanwhile; reload it")


def _member(db: Session, session_id: str, subject: str) -> dict[str, Any]:
    """A member of the session's state (chair, invitee, a party who joined), or 400."""
    state, _ = read_state(db.connection(), session_id)
    member = state["members"].get(subject)
    if member is None:
        raise InvalidInput(f"{subject!r} is not a member of this session")
    return dict(member)


def check_access(ctx: LiveContext, principal: Principal, session_id: str) -> None:
    sessions.detail(ctx, principal, session_id)  # NotFound for another's or a missing one


def _outcome(db: Session, row: ConsiliumSession, changes: list[Change]) -> Outcome:
    db.commit()
    db.refresh(row)
    return Outcome(row, changes)


# -- reading ------------------------------------------------------------------------------------


def public(ctx: LiveContext, db: Session, row: ConsiliumSession) -> ProtocolPublic:
    protocol = find_protocol(db, row)
    if protocol is None:
        return ProtocolPublic(session_id=row.id, case_id=row.case_id,
                              status=ProtocolStatus.DRAFT, editor=row.chair_subject,
                              editor_name=row.chair_name, version=0, text="", versions=[],
                              signatures=[], closed_at=None, closed_by="", content_sha256="",
                              pdf_url=None, attachment_id=None, archived=[])
    versions = db.exec(select(ProtocolVersion).where(
        ProtocolVersion.protocol_id == protocol.id).order_by(col(ProtocolVersion.version))).all()
    archived = db.exec(select(ProtocolArchived).where(
        ProtocolArchived.protocol_id == protocol.id).order_by(col(ProtocolArchived.id))).all()
    closed = protocol.status == ProtocolStatus.CLOSED.value
    return ProtocolPublic(
        session_id=row.id, case_id=row.case_id, status=ProtocolStatus(protocol.status),
        editor=protocol.editor_subject, editor_name=protocol.editor_name,
        version=protocol.version, text=protocol.text,
        versions=[VersionPublic(version=v.version, author=v.author, author_name=v.author_name,
                                author_institution=v.author_institution,
                                at=aware(v.at) or v.at) for v in versions],
        signatures=[_signature_public(s) for s in signatures_of(db, protocol)],
        closed_at=aware(protocol.closed_at), closed_by=protocol.closed_by,
        content_sha256=protocol.content_sha256,
        pdf_url=f"/api/consilia/{row.id}/protocol.pdf" if closed else None,
        attachment_id=protocol.attachment_id,
        archived=[ArchivedProtocolPublic(
            study_uid=a.study_uid, kind=a.kind, series_uid=a.series_uid,
            sop_instance_uid=a.sop_instance_uid, sop_class_uid=a.sop_class_uid,
            status=a.status, reason=a.reason) for a in archived])


def _signature_public(s: ProtocolSignature) -> SignaturePublic:
    return SignaturePublic(subject=s.subject, name=s.name, institution=s.institution,
                           version=s.version, agree=s.agree, dissent=s.dissent,
                           at=aware(s.at) or s.at)


def signatures_of(db: Session, protocol: Protocol) -> list[ProtocolSignature]:
    """The signatures that count: not voided, in the order given."""
    return list(db.exec(select(ProtocolSignature).where(
        ProtocolSignature.protocol_id == protocol.id,
        col(ProtocolSignature.voided_at).is_(None)).order_by(col(ProtocolSignature.id))))


def protocol_of(ctx: LiveContext, principal: Principal, session_id: str) -> ProtocolPublic:
    check_access(ctx, principal, session_id)
    with Session(ctx.engine) as db:
        return public(ctx, db, session_row(db, session_id))


def versions_of(ctx: LiveContext, principal: Principal, session_id: str) -> list[VersionText]:
    """Every saved version with its text, oldest first."""
    check_access(ctx, principal, session_id)
    with Session(ctx.engine) as db:
        protocol = find_protocol(db, session_row(db, session_id))
        if protocol is None:
            return []
        rows = db.exec(select(ProtocolVersion).where(
            ProtocolVersion.protocol_id == protocol.id).order_by(col(ProtocolVersion.version)))
        return [VersionText(version=v.version, text=v.text, author=v.author,
                            author_name=v.author_name, author_institution=v.author_institution,
                            at=aware(v.at) or v.at) for v in rows]


# -- writing ------------------------------------------------------------------------------------


def give_pen(ctx: LiveContext, principal: Principal, session_id: str, subject: str) -> Outcome:
    """The chair hands the pen to a member (herself: takes it back)."""
    check_access(ctx, principal, session_id)
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = session_row(db, session_id)
        if row.chair_subject != principal.subject:
            raise Forbidden("only the chair hands over the pen")
        protocol = find_protocol(db, row, create=True)
        assert protocol is not None
        if protocol.status != ProtocolStatus.DRAFT.value:
            raise Conflict(f"the protocol is {protocol.status}: reopen it to edit")
        member = _member(db, session_id, subject)
        claim(db, protocol, ProtocolStatus.DRAFT, editor_subject=subject,
               editor_name=member["name"])
        change = append_change(db.connection(), Draft(session_id, ChangeKind.PROTOCOL_PEN,
                                                principal.subject, {
            "subject": subject, "name": member["name"], "by": principal.subject}))
        return _outcome(db, row, [change])


def save(ctx: LiveContext, principal: Principal, session_id: str, text: str,
         base_version: int) -> Outcome:
    """The editor saves the text as a new version, made on ``base_version`` (the newest)."""
    if len(text) > PROTOCOL_MAX:
        raise InvalidInput(f"the protocol is limited to {PROTOCOL_MAX} characters")
    check_access(ctx, principal, session_id)
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = session_row(db, session_id)
        if row.status == SessionStatus.SCHEDULED.value:
            raise Conflict("the session has not opened")
        protocol = find_protocol(db, row, create=True)
        assert protocol is not None
        if protocol.status != ProtocolStatus.DRAFT.value:
            raise Conflict(f"the protocol is {protocol.status}: reopen it to edit")
        if protocol.editor_subject != principal.subject:
            raise Forbidden("only the one who holds the pen edits the protocol")
        if protocol.version != base_version:
            raise Conflict(f"version {protocol.version} was saved meanwhile; reload it")
        if protocol.version >= MAX_VERSIONS:
            raise Conflict(f"a protocol has at most {MAX_VERSIONS} versions")
        version = protocol.version + 1
        claim(db, protocol, ProtocolStatus.DRAFT, base_version, version=version, text=text)
        db.add(ProtocolVersion(protocol_id=protocol.id or 0, version=version, text=text,
                               author=principal.subject, author_name=principal.display_name,
                               author_institution=principal.institution_id or "",
                               at=utcnow()))
        change = append_change(db.connection(), Draft(session_id, ChangeKind.PROTOCOL_SAVED,
                                                principal.subject, {
            "version": version, "text": text, "name": principal.display_name,
            "institution": principal.institution_id or ""}))
        return _outcome(db, row, [change])


def submit(ctx: LiveContext, principal: Principal, session_id: str, version: int) -> Outcome:
    """The chair puts the newest version (``version``) to the participants for signing."""
    check_access(ctx, principal, session_id)
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = session_row(db, session_id)
        protocol = find_protocol(db, row)
        if row.chair_subject != principal.subject:
            raise Forbidden("only the chair puts the protocol to signing")
        if protocol is None or protocol.version == 0 or not protocol.text.strip():
            raise Conflict("nothing is written yet")
        if protocol.version != version:
            raise Conflict(f"the newest version is {protocol.version}; reload it")
        claim(db, protocol, ProtocolStatus.DRAFT, version,
               status=ProtocolStatus.SIGNING.value)
        change = append_change(db.connection(), Draft(session_id, ChangeKind.PROTOCOL_SIGNING,
                                                principal.subject, {"version": version}))
        return _outcome(db, row, [change])


def sign(ctx: LiveContext, principal: Principal, session_id: str, version: int, agree: bool,
         dissent: str = "") -> Outcome:
    """A member signs the version put to signing: agreeing, or dissenting with a text."""
    dissent = dissent.strip()
    if not agree and not dissent:
        raise InvalidInput("a dissent says why")
    if len(dissent) > DISSENT_MAX:
        raise InvalidInput(f"a dissent is limited to {DISSENT_MAX} characters")
    check_access(ctx, principal, session_id)
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = session_row(db, session_id)
        protocol = find_protocol(db, row)
        if protocol is None or protocol.status != ProtocolStatus.SIGNING.value:
            raise Conflict("the protocol is not put to signing")
        if protocol.version != version:
            raise Conflict(f"version {protocol.version} is put to signing; reload it")
        member = _member(db, session_id, principal.subject)
        stamp = utcnow()
        claim(db, protocol, ProtocolStatus.SIGNING, version)  # still as read
        db.execute(update(ProtocolSignature).where(
            col(ProtocolSignature.protocol_id) == protocol.id,
            col(ProtocolSignature.subject) == principal.subject,
            col(ProtocolSignature.voided_at).is_(None)).values(voided_at=stamp))
        institution = principal.institution_id or member.get("institution", "")
        db.add(ProtocolSignature(protocol_id=protocol.id or 0, version=version,
                                 subject=principal.subject, name=principal.display_name,
                                 institution=institution, agree=agree,
                                 dissent="" if agree else dissent, at=stamp))
        change = append_change(db.connection(), Draft(session_id, ChangeKind.PROTOCOL_SIGNED,
                                                principal.subject, {
            "subject": principal.subject, "name": principal.display_name,
            "institution": institution, "agree": agree, "dissent": "" if agree else dissent,
            "version": version}, at=stamp))
        return _outcome(db, row, [change])


def reopen(ctx: LiveContext, principal: Principal, session_id: str) -> Outcome:
    """The chair takes the protocol back to writing; the signatures given are voided."""
    check_access(ctx, principal, session_id)
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = session_row(db, session_id)
        protocol = find_protocol(db, row)
        if row.chair_subject != principal.subject:
            raise Forbidden("only the chair reopens the protocol")
        if protocol is None or protocol.status != ProtocolStatus.SIGNING.value:
            raise Conflict("only a protocol put to signing can be reopened")
        stamp = utcnow()
        claim(db, protocol, ProtocolStatus.SIGNING, status=ProtocolStatus.DRAFT.value)
        db.execute(update(ProtocolSignature).where(
            col(ProtocolSignature.protocol_id) == protocol.id,
            col(ProtocolSignature.voided_at).is_(None)).values(voided_at=stamp))
        change = append_change(db.connection(), Draft(session_id, ChangeKind.PROTOCOL_REOPENED,
                                                principal.subject, {"by": principal.subject}))
        return _outcome(db, row, [change])


def content_sha256(session_id: str, version: int, text: str,
                   signatures: list[ProtocolSignature]) -> str:
    """What the closed protocol says, hashed: the text and every signature as given."""
    content = {"session": session_id, "version": version, "text": text, "signatures": [
        {"subject": s.subject, "name": s.name, "institution": s.institution, "agree": s.agree,
         "dissent": s.dissent, "at": (aware(s.at) or s.at).isoformat()} for s in signatures]}
    return hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()
