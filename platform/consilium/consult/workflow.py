"""The consult case state machine: every transition is one plain function.

Each function checks, in this order: the caller may see the case (else 404), the case is in a
state that allows the transition (else 409 with the reason), the caller may make it (identity
policy, else 403), the caller saw the current version (optimistic lock, else 409). Then it
changes the case, leaves a history event, ends or creates grants, and tells the parties
(``ctx.notify``, after the commit): whoever calls it, the parties hear of it.

    draft ──submit──▶ submitted ──accept──▶ accepted ──conclude──▶ concluded ──amend──▶ amended
      │                 │  ▲  │                │                        │                 │
    cancel          decline │ reassign      return                    close             close
      ▼                 ▼  │                   ▼                        ▼                 ▼
    cancelled      declined └──resubmit── returned                    closed            closed
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from consilium.archive.access import ArchiveAccess, Reader, StudyRef
from consilium.audit import Actor
from consilium.consult.annotations import key_sops_by_study, replace_key_images
from consilium.consult.archiving import archive_conclusion, retry_archiving
from consilium.consult.cases import (
    actor_of,
    case_study_uids,
    load_case,
    notify,
    now,
    parties,
    record_event,
)
from consilium.consult.context import ConsultContext
from consilium.consult.models import (
    CaseMessage,
    CaseStatus,
    CaseStudy,
    Conclusion,
    ConclusionDraft,
    ConsultCase,
    EventKind,
    Priority,
)
from consilium.errors import Conflict, Forbidden, InvalidInput
from consilium.identity.grants import grant_study, revoke_grant
from consilium.identity.models import Grant, GrantKind
from consilium.identity.policy import Principal, may_act_on_case, may_open_case

# from-states of each transition (the state machine, as data); the order is the order of the
# actions in allowed_actions, which the case page shows as buttons
TRANSITIONS: dict[str, tuple[frozenset[CaseStatus], CaseStatus | None]] = {
    "edit": (frozenset({CaseStatus.DRAFT, CaseStatus.RETURNED}), None),
    "submit": (frozenset({CaseStatus.DRAFT}), CaseStatus.SUBMITTED),
    "resubmit": (frozenset({CaseStatus.RETURNED}), CaseStatus.SUBMITTED),
    "accept": (frozenset({CaseStatus.SUBMITTED}), CaseStatus.ACCEPTED),
    "decline": (frozenset({CaseStatus.SUBMITTED, CaseStatus.ACCEPTED}), CaseStatus.DECLINED),
    "return": (frozenset({CaseStatus.SUBMITTED, CaseStatus.ACCEPTED}), CaseStatus.RETURNED),
    "reassign": (frozenset({CaseStatus.SUBMITTED, CaseStatus.ACCEPTED}), CaseStatus.SUBMITTED),
    "conclude": (frozenset({CaseStatus.ACCEPTED}), CaseStatus.CONCLUDED),
    "amend": (frozenset({CaseStatus.CONCLUDED, CaseStatus.AMENDED}), CaseStatus.AMENDED),
    "close": (frozenset({CaseStatus.CONCLUDED, CaseStatus.AMENDED}), CaseStatus.CLOSED),
    "cancel": (frozenset({CaseStatus.DRAFT, CaseStatus.SUBMITTED, CaseStatus.RETURNED}),
               CaseStatus.CANCELLED),
    "message": (frozenset(set(CaseStatus) - {CaseStatus.CANCELLED, CaseStatus.CLOSED}), None),
}


def allowed_actions(principal: Principal, case: ConsultCase) -> list[str]:
    """What ``principal`` may do with ``case`` now: the transitions its state allows that the
    policy lets this caller make (in :data:`TRANSITIONS` order). The case API answers it with
    every case, so a client shows the right buttons without a copy of these rules; the
    functions below still check every request."""
    status = CaseStatus(case.status)
    who = parties(case)
    return [action for action, (states, _) in TRANSITIONS.items()
            if status in states and may_act_on_case(principal, action, who)]


def _check(principal: Principal, case: ConsultCase, action: str, version: int | None) -> None:
    # the state first: the caller can see the case, so saying why it cannot move leaks nothing
    allowed, _ = TRANSITIONS[action]
    if CaseStatus(case.status) not in allowed:
        raise Conflict(f"cannot {action} a case that is {case.status}")
    if not may_act_on_case(principal, action, parties(case)):
        raise Forbidden(f"you may not {action} this case")
    if version is not None and version != case.version:
        raise Conflict(f"the case changed since you loaded it (version {case.version}, "
                       f"yours {version}); reload and try again")


def open_case(
    ctx: ConsultContext,
    principal: Principal,
    *,
    question: str,
    study_uids: Sequence[str],
    target_institution: str,
    priority: Priority = Priority.ROUTINE,
    target_specialty: str = "",
    target_subject: str = "",
    clinical_info: str = "",
    key_images: dict[str, list[str]] | None = None,
    actor: Actor | None = None,
) -> ConsultCase:
    """A draft case linking studies the requester may read to a clinical question (checked by
    the archive's gate; a refusal is recorded with ``actor``, who asked from where)."""
    if not may_open_case(principal):
        raise Forbidden("only referring doctors and heads open consult requests")
    if not question.strip():
        raise InvalidInput("the clinical question is empty")
    if not study_uids:
        raise InvalidInput("a case links at least one study")
    if target_institution == principal.institution_id:
        raise InvalidInput("the target is another institution")
    gate = _gate(ctx)
    linked = {ref.study_uid: ref for ref in gate.require_linkable(
        Reader(principal, actor or actor_of(principal)), list(study_uids))}
    _check_key_images(gate, linked, key_images or {})
    first = linked[study_uids[0]]
    patient = (first.patient_id, first.patient_name)
    stamp = now()
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = ConsultCase(
            status=CaseStatus.DRAFT.value, priority=priority.value, question=question.strip(),
            clinical_info=clinical_info, patient_id=patient[0], patient_name=patient[1],
            requester_subject=principal.subject, requester_name=principal.display_name,
            requester_institution=principal.institution_id or "",
            target_institution=target_institution, target_specialty=target_specialty,
            target_subject=target_subject, created_at=stamp)
        session.add(case)
        session.flush()
        for uid in study_uids:
            session.add(CaseStudy(case_id=case.id or 0, study_uid=uid,
                                  institution_id=linked[uid].institution_id))
        replace_key_images(ctx.engine, session, case, principal, key_images or {})
        record_event(session, case, principal, EventKind.CREATED,
                     detail={"studies": list(study_uids), "target": target_institution})
        session.commit()
        session.refresh(case)
    notify(ctx, case, "created")
    return case


def _gate(ctx: ConsultContext) -> ArchiveAccess:
    """The archive's gate over the context's engine and audit trail (it keeps no state)."""
    return ArchiveAccess(ctx.engine, ctx.audit)


MAX_KEY_IMAGES_PER_STUDY = 50  # a consult points at a few images


@dataclass(frozen=True)
class CaseEdit:
    """What the requester changes in a draft (or, for the text, in a returned case); None
    leaves a field as it is. Studies, key images and the target change only in a draft: once
    submitted, they are what the target institution was granted and asked."""

    question: str | None = None
    clinical_info: str | None = None
    priority: Priority | None = None
    target_institution: str | None = None
    target_specialty: str | None = None
    target_subject: str | None = None
    study_uids: list[str] | None = None
    key_images: dict[str, list[str]] | None = None


DRAFT_ONLY_FIELDS = ("target_institution", "target_specialty", "target_subject", "study_uids",
                     "key_images")


def edit_case(ctx: ConsultContext, principal: Principal, case_id: int, version: int | None,
              changes: CaseEdit, actor: Actor | None = None) -> ConsultCase:
    """Change a draft or a returned case. The version is required: two people editing the
    same draft must not overwrite each other silently (the second gets 409)."""
    if version is None:
        raise InvalidInput("editing needs the 'version' you loaded")
    changed = [name for name in CaseEdit.__dataclass_fields__
               if getattr(changes, name) is not None]
    if not changed:
        raise InvalidInput("nothing to change")
    session, case, previous = _transition(ctx, principal, case_id, "edit", version,
                                          EventKind.EDITED, detail={"changed": changed})
    try:
        late = [name for name in changed if name in DRAFT_ONLY_FIELDS]
        if late and previous != CaseStatus.DRAFT.value:
            raise Conflict(f"{late[0]} can change only while the case is a draft")
        if changes.question is not None:
            if not changes.question.strip():
                raise InvalidInput("the clinical question is empty")
            case.question = changes.question.strip()
        if changes.clinical_info is not None:
            case.clinical_info = changes.clinical_info
        if changes.priority is not None:
            case.priority = changes.priority.value
        if changes.target_institution is not None:
            if changes.target_institution == principal.institution_id:
                raise InvalidInput("the target is another institution")
            case.target_institution = changes.target_institution
        if changes.target_specialty is not None:
            case.target_specialty = changes.target_specialty
        if changes.target_subject is not None:
            case.target_subject = changes.target_subject
        if changes.study_uids is not None or changes.key_images is not None:
            _relink(ctx, session, Reader(principal, actor or actor_of(principal)), case, changes)
    except BaseException:
        session.close()
        raise
    return _finish(ctx, session, case, "edited")


def _relink(ctx: ConsultContext, session: Session, reader: Reader, case: ConsultCase,
            changes: CaseEdit) -> None:
    """Replace a draft's studies (each one the requester may read) and key images."""
    current = {s.study_uid: s for s in session.exec(
        select(CaseStudy).where(CaseStudy.case_id == case.id))}
    uids = list(changes.study_uids) if changes.study_uids is not None else list(current)
    if not uids:
        raise InvalidInput("a case links at least one study")
    kept = key_sops_by_study(session, case.id or 0)
    key_images = changes.key_images if changes.key_images is not None else {
        uid: sops for uid, sops in kept.items() if uid in uids}
    stray = set(key_images) - set(uids)
    if stray:
        raise InvalidInput(f"key images of a study the case does not link: {sorted(stray)[0]}")
    gate = _gate(ctx)
    linked = {ref.study_uid: ref for ref in gate.require_linkable(reader, uids)}
    _check_key_images(gate, linked, key_images)
    for uid, link in current.items():
        if uid not in uids:
            session.delete(link)
    for uid in uids:
        link = current.get(uid) or CaseStudy(case_id=case.id or 0, study_uid=uid,
                                             institution_id=linked[uid].institution_id)
        session.add(link)
    replace_key_images(ctx.engine, session, case, reader.principal, key_images)
    case.patient_id, case.patient_name = linked[uids[0]].patient_id, linked[uids[0]].patient_name


def _check_key_images(gate: ArchiveAccess, linked: dict[str, StudyRef],
                      key_images: dict[str, list[str]]) -> None:
    """Every key image is an instance of the (linked) study it is listed under."""
    for study_uid, sop_uids in key_images.items():
        if len(sop_uids) > MAX_KEY_IMAGES_PER_STUDY:
            raise InvalidInput(f"at most {MAX_KEY_IMAGES_PER_STUDY} key images per study")
        if not sop_uids:
            continue
        if study_uid not in linked:
            raise InvalidInput(f"key images of a study the case does not link: {study_uid}")
        found = gate.instances_in_study(linked[study_uid], sop_uids)
        missing = [u for u in sop_uids if u not in found]
        if missing:
            raise InvalidInput(f"key image {missing[0]} is not an image of study {study_uid}")


def _transition(
    ctx: ConsultContext, principal: Principal, case_id: int, action: str, version: int | None,
    kind: EventKind, detail: dict[str, Any] | None = None,
) -> tuple[Session, ConsultCase, str]:
    session = Session(ctx.engine, expire_on_commit=False)
    try:
        case = load_case(session, principal, case_id)
        _check(principal, case, action, version)
    except BaseException:
        session.close()
        raise
    previous = case.status
    target = TRANSITIONS[action][1]
    if target is not None:
        case.status = target.value
    case.version += 1
    record_event(session, case, principal, kind, previous, detail)
    return session, case, previous


def _finish(ctx: ConsultContext, session: Session, case: ConsultCase,
            what: str | None) -> ConsultCase:
    """Commit the change and tell the parties (``what`` happened; None: the caller tells them
    once the rest of the change is done)."""
    try:
        session.add(case)
        session.commit()
        session.refresh(case)
    finally:
        session.close()
    if what is not None:
        notify(ctx, case, what)
    return case


def submit(ctx: ConsultContext, principal: Principal, case_id: int,
           version: int | None = None) -> ConsultCase:
    """Send the request: the target institution now sees exactly the linked studies."""
    session, case, _ = _transition(ctx, principal, case_id, "submit", version,
                                   EventKind.SUBMITTED)
    stamp = now()
    case.submitted_at = stamp
    case.due_at = stamp + timedelta(hours=ctx.due_hours[Priority(case.priority)])
    uids = case_study_uids(session, case_id)
    result = _finish(ctx, session, case, None)
    for uid in uids:
        grant_study(ctx.engine, ctx.audit, actor_of(principal), uid,
                    institution_id=case.target_institution, kind=GrantKind.CASE,
                    reference=f"case-{case.id}")
    notify(ctx, result, "submit")  # once the target may read the studies
    return result


def resubmit(ctx: ConsultContext, principal: Principal, case_id: int, answer: str,
             version: int | None = None) -> ConsultCase:
    session, case, _ = _transition(ctx, principal, case_id, "resubmit", version,
                                   EventKind.RESUBMITTED, {"answer": answer})
    if answer.strip():
        session.add(_message(case, principal, answer))
    return _finish(ctx, session, case, "resubmit")


def accept(ctx: ConsultContext, principal: Principal, case_id: int,
           version: int | None = None) -> ConsultCase:
    session, case, _ = _transition(ctx, principal, case_id, "accept", version,
                                   EventKind.ACCEPTED)
    case.assignee_subject = principal.subject
    case.assignee_name = principal.display_name
    case.accepted_at = now()
    return _finish(ctx, session, case, "accept")


def decline(ctx: ConsultContext, principal: Principal, case_id: int, reason: str,
            version: int | None = None) -> ConsultCase:
    if not reason.strip():
        raise InvalidInput("a decline needs a reason")
    session, case, _ = _transition(ctx, principal, case_id, "decline", version,
                                   EventKind.DECLINED, {"reason": reason})
    case.closed_at = now()
    result = _finish(ctx, session, case, None)
    _end_grants(ctx, principal, result, immediately=True)
    notify(ctx, result, "decline")
    return result


def return_for_information(ctx: ConsultContext, principal: Principal, case_id: int,
                           request: str, version: int | None = None) -> ConsultCase:
    if not request.strip():
        raise InvalidInput("say what information is missing")
    session, case, _ = _transition(ctx, principal, case_id, "return", version,
                                   EventKind.RETURNED, {"request": request})
    session.add(_message(case, principal, request))
    return _finish(ctx, session, case, "return")


def reassign(ctx: ConsultContext, principal: Principal, case_id: int, *,
             specialty: str | None = None, subject: str = "",
             version: int | None = None) -> ConsultCase:
    """Within the target institution: another specialty or a named colleague."""
    session, case, _ = _transition(ctx, principal, case_id, "reassign", version,
                                   EventKind.REASSIGNED,
                                   {"specialty": specialty, "subject": subject})
    if specialty is not None:
        case.target_specialty = specialty
    case.target_subject = subject
    case.assignee_subject = ""
    case.assignee_name = ""
    case.accepted_at = None
    return _finish(ctx, session, case, "reassign")


def post_message(ctx: ConsultContext, principal: Principal, case_id: int,
                 text: str) -> CaseMessage:
    if not text.strip():
        raise InvalidInput("the message is empty")
    session, case, _ = _transition(ctx, principal, case_id, "message", None, EventKind.MESSAGE)
    message = _message(case, principal, text)
    session.add(message)
    _finish(ctx, session, case, "message")
    return message


def _message(case: ConsultCase, principal: Principal, text: str) -> CaseMessage:
    return CaseMessage(case_id=case.id or 0, at=now(), author=principal.subject,
                       author_name=principal.display_name,
                       author_institution=principal.institution_id or "", text=text.strip())


def _conclusion_hash(findings: str, impression: str, recommendations: str) -> str:
    payload = json.dumps([findings, impression, recommendations], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def conclude(ctx: ConsultContext, principal: Principal, case_id: int, *, findings: str,
             impression: str, recommendations: str = "",
             version: int | None = None) -> Conclusion:
    """Sign the opinion. It cannot change afterwards; see :func:`amend`."""
    if not impression.strip():
        raise InvalidInput("the impression is empty")
    session, case, _ = _transition(ctx, principal, case_id, "conclude", version,
                                   EventKind.CONCLUDED, {"version": 1})
    signed = _sign(ctx, session, case, principal, 1, findings, impression, recommendations,
                   None, "")
    _archive(ctx, signed)
    notify(ctx, case, "conclude")  # with what was archived: the parties reload it
    return signed


def amend(ctx: ConsultContext, principal: Principal, case_id: int, *, findings: str,
          impression: str, recommendations: str = "", reason: str,
          version: int | None = None) -> Conclusion:
    """A new signed version that names the one it replaces; the old one stays as it was."""
    if not reason.strip():
        raise InvalidInput("an amendment needs a reason")
    session, case, _ = _transition(ctx, principal, case_id, "amend", version,
                                   EventKind.AMENDED, {"reason": reason})
    latest = session.exec(select(Conclusion).where(Conclusion.case_id == case_id)
                          .order_by(col(Conclusion.version).desc())).first()
    previous = latest.version if latest else 0
    signed = _sign(ctx, session, case, principal, previous + 1, findings, impression,
                   recommendations, previous or None, reason)
    _archive(ctx, signed)
    notify(ctx, case, "amend")
    return signed


def _sign(ctx: ConsultContext, session: Session, case: ConsultCase, principal: Principal,
          number: int, findings: str, impression: str, recommendations: str,
          replaces: int | None, reason: str) -> Conclusion:
    stamp = now()
    conclusion = Conclusion(
        case_id=case.id or 0, version=number, findings=findings, impression=impression,
        recommendations=recommendations, author=principal.subject,
        author_name=principal.display_name, author_institution=principal.institution_id or "",
        signed_at=stamp, replaces_version=replaces, amendment_reason=reason,
        content_sha256=_conclusion_hash(findings, impression, recommendations))
    session.add(conclusion)
    if case.concluded_at is None:
        case.concluded_at = stamp
    for draft in session.exec(select(ConclusionDraft).where(
            ConclusionDraft.case_id == case.id)):
        session.delete(draft)  # what was being written is now signed
    _finish(ctx, session, case, None)  # one commit: the case, its event, the conclusion
    return conclusion


def _archive(ctx: ConsultContext, conclusion: Conclusion) -> None:
    """Write the signed conclusion into the archive beside its studies (PDF and SR). It is
    signed already: a failure there is logged and recorded for a retry, never raised."""
    if ctx.documents is not None:
        retry_archiving(ctx)  # what failed before, first: this one's failure is logged once
        archive_conclusion(ctx, conclusion.id or 0)


def close(ctx: ConsultContext, principal: Principal, case_id: int,
          version: int | None = None) -> ConsultCase:
    """The requester has what they asked for; the grants expire after the retention."""
    session, case, _ = _transition(ctx, principal, case_id, "close", version, EventKind.CLOSED)
    case.closed_at = now()
    result = _finish(ctx, session, case, None)
    _end_grants(ctx, principal, result, immediately=False)
    notify(ctx, result, "close")
    return result


def cancel(ctx: ConsultContext, principal: Principal, case_id: int,
           version: int | None = None) -> ConsultCase:
    session, case, _ = _transition(ctx, principal, case_id, "cancel", version,
                                   EventKind.CANCELLED)
    case.closed_at = now()
    result = _finish(ctx, session, case, None)
    _end_grants(ctx, principal, result, immediately=True)
    notify(ctx, result, "cancel")
    return result


def _end_grants(ctx: ConsultContext, principal: Principal, case: ConsultCase,
                immediately: bool) -> None:
    with Session(ctx.engine) as session:
        grants = list(session.exec(select(Grant).where(
            Grant.reference == f"case-{case.id}", col(Grant.revoked_at).is_(None))))
        if not immediately:
            until = now() + ctx.grant_retention
            for grant in grants:
                grant.expires_at = until
                session.add(grant)
            session.commit()
            return
    for grant in grants:
        revoke_grant(ctx.engine, ctx.audit, actor_of(principal), grant.id or 0)


