"""The lifecycle of a consilium session, as plain functions over the database.

    schedule ──(at = now)──▶ open ──end──▶ ended
        │                      ▲
        └────────start─────────┘            (a scheduled session can also be ended: cancelled)

Who: a session belongs to a consult case. The one who schedules or starts it is its chair: a
clinician who may see the case (its referring doctor, a consultant or head of the target
institution). Who may join: the case's parties (:func:`consilium.identity.policy.may_see_case`)
and the clinicians the chair invited, of any institution. An invitation is a grant of exactly
the case's studies to that user (identity's grants, kind ``consilium``, reference
``consilium-<id>``, audited), valid until the session ends plus ``retention`` (and never longer
than ``max_session`` after the scheduled start); uninviting revokes it at once. Everyone else
gets the same "no such session" for a session that exists and one that does not.

Each function writes its changes of the session (:mod:`.sequencer`) in its own transaction and
returns them; the adapter then delivers them (:class:`consilium.live.hub.LiveHub`) and sends the
notifications, so every caller notifies. They block on the database: adapters call them in a
worker thread.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, update
from sqlmodel import Session, col, select

from consilium.archive.access import ArchiveAccess, Purpose, Reader
from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.consult.cases import load_case, parties
from consilium.consult.models import FINAL_STATUSES, CaseStatus, CaseStudy, ConsultCase
from consilium.errors import Conflict, Forbidden, InvalidInput, NotFound
from consilium.identity.grants import grant_study, revoke_grant
from consilium.identity.models import CLINICAL_ROLES, Grant, GrantKind, User
from consilium.identity.policy import Principal, may_see_case
from consilium.live.events import ChangeKind
from consilium.live.models import (
    ConsiliumSession,
    MemberPublic,
    MemberRole,
    PersonPublic,
    SessionMember,
    SessionPublic,
    SessionStatus,
)
from consilium.live.record import write_case_events
from consilium.live.sequencer import Change, Draft, append, utcnow

MAX_INVITEES = 50
MAX_AHEAD = timedelta(days=90)
NOT_FOUND = "no such consilium session here"


@dataclass(frozen=True)
class LiveContext:
    """What the live domain works with (built by the app from the runtime and settings)."""

    engine: Engine
    audit: AuditTrail
    access: ArchiveAccess
    public_url: str = ""
    max_session: timedelta = timedelta(hours=12)
    retention: timedelta = timedelta(minutes=60)
    process_id: str = ""


@dataclass(frozen=True)
class Invitee:
    subject: str
    user_id: int
    name: str
    institution: str


@dataclass
class Outcome:
    """What a lifecycle function did: the session as it is now, its changes to deliver, who
    was newly invited (to notify) and whether it has just opened (to prepare its volumes)."""

    session: ConsiliumSession
    changes: list[Change] = field(default_factory=list)
    invited: list[Invitee] = field(default_factory=list)
    opened: bool = False
    ended: bool = False


@dataclass(frozen=True)
class Admission:
    """Someone let into a session, and as what."""

    session_id: str
    case_id: int
    subject: str
    name: str
    institution: str
    role: MemberRole
    invited: bool
    status: SessionStatus
    study_uids: tuple[str, ...]
    until: datetime | None = None
    """When an invitee who is no party of the case must leave (their invitation ends)."""


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _actor(principal: Principal, actor: Actor | None) -> Actor:
    return actor or Actor(principal.subject, principal.display_name,
                          principal.institution_id or "")


# -- reading ------------------------------------------------------------------------------------


def _valid_member(member: SessionMember | None, at: datetime) -> bool:
    if member is None or member.removed_at is not None:
        return False
    expires = _aware(member.expires_at)
    return expires is None or expires > at


def _member(db: Session, session_id: str, subject: str) -> SessionMember | None:
    return db.exec(select(SessionMember).where(SessionMember.session_id == session_id,
                                               SessionMember.subject == subject)).first()


def _may_enter(db: Session, principal: Principal, row: ConsiliumSession) -> tuple[
        SessionMember | None, ConsultCase | None]:
    """(member row, case) when ``principal`` may enter, else raises NotFound."""
    if not principal.is_clinician:
        raise NotFound(NOT_FOUND)
    member = _member(db, row.id, principal.subject)
    if _valid_member(member, utcnow()):
        return member, None
    case = db.get(ConsultCase, row.case_id)
    if case is not None and may_see_case(principal, parties(case)):
        return None, case
    raise NotFound(NOT_FOUND)


def _load(db: Session, principal: Principal, session_id: str) -> tuple[
        ConsiliumSession, SessionMember | None]:
    row = db.get(ConsiliumSession, session_id)
    if row is None:
        raise NotFound(NOT_FOUND)
    member, _ = _may_enter(db, principal, row)
    return row, member


def study_uids_of_case(db: Session, case_id: int) -> list[str]:
    return list(db.exec(select(CaseStudy.study_uid).where(CaseStudy.case_id == case_id)
                        .order_by(col(CaseStudy.id))))


def admit(ctx: LiveContext, reader: Reader, session_id: str) -> Admission:
    """Let ``reader`` into a session (a join): a party of its case or a valid invitee, and the
    archive's gate lets them read every study of the case (a view of each, recorded; an ended
    grant is refused and recorded by the gate). NotFound otherwise, unrecorded: the socket
    adapter records its refusals with what was asked."""
    principal = reader.principal
    with Session(ctx.engine) as db:
        row, member = _load(db, principal, session_id)
        uids = study_uids_of_case(db, row.case_id)
    for uid in uids:
        ctx.access.require_study(reader, uid, Purpose.FRAME,
                                 {"what": "consilium session", "session": session_id})
    role = MemberRole(member.role) if member is not None else MemberRole.MEMBER
    if principal.subject == row.chair_subject:
        role = MemberRole.CHAIR
    until = None
    if member is not None and member.invited and not _party(ctx, principal, row.case_id):
        until = _aware(member.expires_at)
    return Admission(row.id, row.case_id, principal.subject, principal.display_name,
                     principal.institution_id or "", role,
                     bool(member and member.invited), SessionStatus(row.status), tuple(uids),
                     until)


def _party(ctx: LiveContext, principal: Principal, case_id: int) -> bool:
    with Session(ctx.engine) as db:
        case = db.get(ConsultCase, case_id)
        return case is not None and may_see_case(principal, parties(case))


def refused(ctx: LiveContext, actor: Actor, what: str, asked: str, error: NotFound) -> None:
    """The ``denied`` event of a refused socket request: what was asked, nothing more (the
    same row for a session of others and one that does not exist)."""
    ctx.audit.submit(actor, AuditAction.DENIED, AuditOutcome.DENIED,
                     detail={"what": "not found", "event": what, "session": asked[:40],
                             "reason": error.message})


def public(ctx: LiveContext, db: Session, row: ConsiliumSession) -> SessionPublic:
    members = db.exec(select(SessionMember).where(SessionMember.session_id == row.id,
                                                  col(SessionMember.removed_at).is_(None))
                      .order_by(col(SessionMember.id))).all()
    return SessionPublic(
        id=row.id, case_id=row.case_id, title=row.title, status=SessionStatus(row.status),
        scheduled_at=_aware(row.scheduled_at) or row.scheduled_at,
        opened_at=_aware(row.opened_at), ended_at=_aware(row.ended_at),
        chair=PersonPublic(subject=row.chair_subject, name=row.chair_name,
                           institution=row.chair_institution),
        presenter=row.presenter_subject, last_seq=row.last_seq,
        members=[MemberPublic(subject=m.subject, name=m.name, institution=m.institution,
                              role=MemberRole(m.role), invited=m.invited,
                              expires_at=_aware(m.expires_at)) for m in members],
        url=f"{ctx.public_url}/viewer/consilia/{row.id}")


def detail(ctx: LiveContext, principal: Principal, session_id: str) -> SessionPublic:
    with Session(ctx.engine) as db:
        row, _ = _load(db, principal, session_id)
        return public(ctx, db, row)


def sessions_of(ctx: LiveContext, principal: Principal, include_ended_days: float = 7.0
                ) -> list[SessionPublic]:
    """The caller's inbox of sessions: where they are chair or a valid invitee, not ended or
    ended within ``include_ended_days``, soonest first."""
    if not principal.is_clinician:
        return []
    since = utcnow() - timedelta(days=include_ended_days)
    stamp = utcnow()
    with Session(ctx.engine) as db:
        rows = db.exec(select(ConsiliumSession, SessionMember).join(
            SessionMember, col(SessionMember.session_id) == col(ConsiliumSession.id)).where(
            SessionMember.subject == principal.subject)
            .order_by(col(ConsiliumSession.scheduled_at)).limit(200)).all()
        out = []
        for row, member in rows:
            if not _valid_member(member, stamp) and row.chair_subject != principal.subject:
                continue
            ended = _aware(row.ended_at)
            if ended is not None and ended < since:
                continue
            out.append(public(ctx, db, row))
    return out


def case_sessions(ctx: LiveContext, principal: Principal, case_id: int) -> list[SessionPublic]:
    """The sessions of a case, for whoever may see the case."""
    with Session(ctx.engine) as db:
        load_case(db, principal, case_id)
        rows = db.exec(select(ConsiliumSession).where(ConsiliumSession.case_id == case_id)
                       .order_by(col(ConsiliumSession.scheduled_at))).all()
        return [public(ctx, db, r) for r in rows]


# -- lifecycle ----------------------------------------------------------------------------------


def _invitees(db: Session, principal: Principal, subjects: Sequence[str],
              already: set[str]) -> list[Invitee]:
    if len(subjects) > MAX_INVITEES:
        raise InvalidInput(f"at most {MAX_INVITEES} invitees")
    found: list[Invitee] = []
    for subject in dict.fromkeys(subjects):
        if subject == principal.subject or subject in already:
            continue
        provider, _, local = subject.partition(":")
        user = db.exec(select(User).where(User.provider_id == provider,
                                          User.provider_subject == local)).first()
        roles = set(user.roles.split()) if user is not None else set()
        if user is None or not roles & {r.value for r in CLINICAL_ROLES}:
            raise InvalidInput(f"{subject!r} is not a clinician known to Consilium")
        found.append(Invitee(subject, user.id or 0, user.display_name, user.institution_id))
    return found


def _add_invitees(ctx: LiveContext, db: Session, row: ConsiliumSession,
                  principal: Principal, invitees: list[Invitee]) -> list[Change]:
    stamp = utcnow()
    expires = _grant_expiry(ctx, row)
    changes: list[Change] = []
    for invitee in invitees:
        member = _member(db, row.id, invitee.subject)
        if member is None:
            member = SessionMember(session_id=row.id, subject=invitee.subject,
                                   role=MemberRole.MEMBER.value)
        member.user_id, member.name, member.institution = (invitee.user_id, invitee.name,
                                                           invitee.institution)
        member.invited, member.invited_by, member.invited_at = True, principal.subject, stamp
        member.expires_at, member.removed_at = expires, None
        db.add(member)
        db.flush()
        change = append(db.connection(), Draft(row.id, ChangeKind.MEMBER_INVITED,
                                               principal.subject, {
            "subject": invitee.subject, "name": invitee.name,
            "institution": invitee.institution}))
        if change is not None:
            changes.append(change)
    return changes


def _grant_expiry(ctx: LiveContext, row: ConsiliumSession) -> datetime:
    start = max(_aware(row.scheduled_at) or utcnow(), utcnow())
    return start + ctx.max_session


def _grant(ctx: LiveContext, actor: Actor, row: ConsiliumSession, uids: list[str],
           invitees: list[Invitee]) -> None:
    """The invitees may read exactly the case's studies while the session lasts (audited)."""
    expires = _grant_expiry(ctx, row)
    for invitee in invitees:
        for uid in uids:
            grant_study(ctx.engine, ctx.audit, actor, uid, user_id=invitee.user_id,
                        kind=GrantKind.CONSILIUM, reference=f"consilium-{row.id}",
                        expires_at=expires)


def schedule(ctx: LiveContext, principal: Principal, case_id: int, *, title: str = "",
             at: datetime | None = None, invitees: Sequence[str] = (),
             actor: Actor | None = None) -> Outcome:
    """A new session of a case, chaired by the caller: opened now when ``at`` is None."""
    stamp = utcnow()
    if at is not None:
        at = _aware(at) or at
        if at < stamp - timedelta(minutes=5) or at > stamp + MAX_AHEAD:
            raise InvalidInput("scheduled_at must be in the next 90 days")
    with Session(ctx.engine, expire_on_commit=False) as db:
        case = load_case(db, principal, case_id)
        if CaseStatus(case.status) in FINAL_STATUSES:
            raise Conflict(f"a {case.status} case has no consilium")
        people = _invitees(db, principal, invitees, set())
        uids = study_uids_of_case(db, case_id)
        row = ConsiliumSession(
            id=secrets.token_urlsafe(15), case_id=case_id, title=title.strip()[:200],
            status=SessionStatus.SCHEDULED.value, scheduled_at=at or stamp,
            chair_subject=principal.subject, chair_name=principal.display_name,
            chair_institution=principal.institution_id or "", created_by=principal.subject,
            created_at=stamp)
        db.add(row)
        db.add(SessionMember(session_id=row.id, subject=principal.subject,
                             user_id=principal.user_id, name=principal.display_name,
                             institution=principal.institution_id or "",
                             role=MemberRole.CHAIR.value, joined_first_at=None))
        db.flush()
        chair = {"subject": principal.subject, "name": principal.display_name,
                 "institution": principal.institution_id or ""}
        changes = [_appended(db.connection(), Draft(row.id, ChangeKind.SESSION_SCHEDULED,
                                                    principal.subject, {
            "case_id": case_id, "title": row.title, "chair": chair,
            "scheduled_at": (at or stamp).astimezone(UTC).isoformat()}))]
        changes += _add_invitees(ctx, db, row, principal, people)
        if at is None:
            changes.append(_appended(db.connection(), Draft(
                row.id, ChangeKind.SESSION_OPENED, principal.subject, {})))
        db.commit()
        db.refresh(row)
    _grant(ctx, _actor(principal, actor), row, uids, people)
    write_case_events(ctx.engine, row, [c.wire() for c in changes])
    return Outcome(row, changes, people, opened=at is None)


def _appended(db: Connection, draft: Draft) -> Change:
    change = append(db, draft)
    if change is None:
        raise Conflict(f"the session does not allow {draft.kind.value} now")
    return change


def _as_chair(db: Session, principal: Principal, session_id: str) -> ConsiliumSession:
    row, _ = _load(db, principal, session_id)
    if row.chair_subject != principal.subject:
        raise Forbidden("only the chair of the session may do this")
    return row


def start(ctx: LiveContext, principal: Principal, session_id: str) -> Outcome:
    """Open a scheduled session (the chair)."""
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = _as_chair(db, principal, session_id)
        if row.status != SessionStatus.SCHEDULED.value:
            raise Conflict(f"the session is {row.status}")
        change = _appended(db.connection(), Draft(row.id, ChangeKind.SESSION_OPENED,
                                                  principal.subject, {}))
        stamp = utcnow()
        invited = [Invitee(m.subject, m.user_id or 0, m.name, m.institution)
                   for m in db.exec(select(SessionMember).where(
                       SessionMember.session_id == row.id, col(SessionMember.invited).is_(True)))
                   if _valid_member(m, stamp)]
        db.commit()
        db.refresh(row)
    write_case_events(ctx.engine, row, [change.wire()])
    return Outcome(row, [change], invited, opened=True)  # told that it has begun


def invite(ctx: LiveContext, principal: Principal, session_id: str, subjects: Sequence[str],
           actor: Actor | None = None) -> Outcome:
    """Invite clinicians of any institution (the chair); each is granted the case's studies."""
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = _as_chair(db, principal, session_id)
        if row.status == SessionStatus.ENDED.value:
            raise Conflict("the session has ended")
        current = {m.subject for m in db.exec(select(SessionMember).where(
            SessionMember.session_id == row.id)) if _valid_member(m, utcnow()) and m.invited}
        people = _invitees(db, principal, subjects, current)
        changes = _add_invitees(ctx, db, row, principal, people)
        uids = study_uids_of_case(db, row.case_id)
        db.commit()
        db.refresh(row)
    _grant(ctx, _actor(principal, actor), row, uids, people)
    return Outcome(row, changes, people)


def uninvite(ctx: LiveContext, principal: Principal, session_id: str, subject: str,
             actor: Actor | None = None) -> Outcome:
    """Take an invitation back (the chair): the grants end at once."""
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = _as_chair(db, principal, session_id)
        member = _member(db, row.id, subject)
        if member is None or not member.invited or member.removed_at is not None:
            raise InvalidInput(f"{subject!r} is not invited to this session")
        member.removed_at = utcnow()
        db.add(member)
        db.flush()
        change = _appended(db.connection(), Draft(row.id, ChangeKind.MEMBER_UNINVITED,
                                                  principal.subject, {"subject": subject}))
        user_id = member.user_id
        db.commit()
        db.refresh(row)
    _end_grants(ctx, _actor(principal, actor), row.id, user_id=user_id, at_once=True)
    return Outcome(row, [change])


def end(ctx: LiveContext, principal: Principal, session_id: str,
        actor: Actor | None = None) -> Outcome:
    """End the session (the chair): invitations end after the retention; the case timeline
    gets who joined when, who presented what, and the chat."""
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = _as_chair(db, principal, session_id)
        if row.status == SessionStatus.ENDED.value:
            raise Conflict("the session has ended")
        change = _appended(db.connection(), Draft(row.id, ChangeKind.SESSION_ENDED,
                                                  principal.subject, {"by": principal.subject}))
        until = utcnow() + ctx.retention
        db.execute(update(SessionMember).where(
            col(SessionMember.session_id) == row.id, col(SessionMember.invited).is_(True),
            col(SessionMember.removed_at).is_(None)).values(expires_at=until))
        db.commit()
        db.refresh(row)
    _end_grants(ctx, _actor(principal, actor), row.id, until=until,
                at_once=ctx.retention <= timedelta(0))
    write_case_events(ctx.engine, row, None)
    return Outcome(row, [change], ended=True)


def _end_grants(ctx: LiveContext, actor: Actor, session_id: str, *, user_id: int | None = None,
                until: datetime | None = None, at_once: bool = False) -> None:
    with Session(ctx.engine) as db:
        query = select(Grant).where(Grant.reference == f"consilium-{session_id}",
                                    col(Grant.revoked_at).is_(None))
        if user_id is not None:
            query = query.where(Grant.grantee_user_id == user_id)
        grants = list(db.exec(query))
        if not at_once and until is not None:
            for grant in grants:
                current = _aware(grant.expires_at)
                grant.expires_at = until if current is None else min(current, until)
                db.add(grant)
            db.commit()
            return
    for grant in grants:
        revoke_grant(ctx.engine, ctx.audit, actor, grant.id or 0)


def seen(ctx: LiveContext, session_id: str, subject: str) -> None:
    """Note a member's join (first and last seen) on their member row, if they have one."""
    stamp = utcnow()
    with Session(ctx.engine) as db:
        member = _member(db, session_id, subject)
        if member is None:
            return
        member.joined_first_at = member.joined_first_at or stamp
        member.last_seen_at = stamp
        db.add(member)
        db.commit()


def due_soon(ctx: LiveContext, within: timedelta) -> list[tuple[str, list[str]]]:
    """Scheduled sessions starting within ``within`` (and open ones), with their studies: what
    the render workers should have warm."""
    horizon = utcnow() + within
    with Session(ctx.engine) as db:
        rows = db.exec(select(ConsiliumSession).where(
            col(ConsiliumSession.status).in_([SessionStatus.SCHEDULED.value,
                                              SessionStatus.OPEN.value]),
            col(ConsiliumSession.scheduled_at) <= horizon)).all()
        return [(r.id, study_uids_of_case(db, r.case_id)) for r in rows]


def open_sessions(engine: Engine) -> list[str]:
    with Session(engine) as db:
        return list(db.exec(select(ConsiliumSession.id).where(
            ConsiliumSession.status == SessionStatus.OPEN.value)))


def invitation_payload(row: ConsiliumSession) -> dict[str, Any]:
    """``consilium:invited``: no patient data, not even the title (free text)."""
    return {"session_id": row.id, "case_id": row.case_id, "status": row.status,
            "scheduled_at": (_aware(row.scheduled_at) or row.scheduled_at).isoformat(),
            "chair_name": row.chair_name, "chair_institution": row.chair_institution}
