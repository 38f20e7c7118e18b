"""A case's annotations (measurements, graphic annotations) and key images: kept with the case,
attributed and coloured by author, read by everyone who reads the case's images.

Who: the parties of the case (:func:`consilium.identity.policy.may_see_case`) and the clinicians
invited to one of its consilium sessions while their invitation lasts (an active ``consilium``
grant of one of the case's studies) may read and draw; only a mark's (or key image's) author
changes or deletes it (:func:`consilium.identity.policy.may_change_mark`). Anyone else gets the
same "no such case" as for a case that does not exist. A declined, closed or cancelled case is
read only. Every write is audited (``store``, what: ``case mark`` / ``case key image``) and told
to the case's parties (``case:updated``, what ``marks`` / ``key-images``).

Two ways in, one table: the HTTP API (:mod:`.annotation_routes`, these functions) and the live
consilium (``mark.put`` / ``mark.deleted`` changes, written into the same table in the
transaction that numbers them: :func:`live_mark_allowed`, :func:`store_live_mark`). Marks are
``last writer wins`` per mark id: in a session, the order of the session's changes.

For the system (archiving on signing, the consilium protocol) there is no policy:
:func:`list_marks` and :func:`list_key_images` read what the case holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, func, select

from consilium.archive import catalog
from consilium.archive.marks import ImageRef, KeyImage, Mark, MarkKind, MarkSource
from consilium.audit import Actor, AuditAction
from consilium.consult.annotation_models import CaseKeyImage, CaseMark
from consilium.consult.cases import actor_of, aware, case_study_uids, notify, now, parties
from consilium.consult.context import ConsultContext
from consilium.consult.models import FINAL_STATUSES, CaseStatus, ConsultCase
from consilium.errors import Conflict, Forbidden, InvalidInput, NotFound
from consilium.identity.models import Grant, GrantKind
from consilium.identity.policy import Principal, may_change_mark, may_mark_case

MAX_MARKS_PER_CASE = 1000
"""Marks kept per case (deleted ones do not count): a consilium draws tens; the bound keeps a
session's state (which carries them) and a join's snapshot small."""
MAX_KEY_IMAGES_PER_CASE = 200

MIN_POINTS = {MarkKind.LENGTH: 2, MarkKind.ANGLE: 3, MarkKind.ELLIPSE: 2,
              MarkKind.RECTANGLE: 2, MarkKind.ARROW: 1, MarkKind.FREEHAND: 2}

PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#bfef45", "#fabed4")
"""Authors' colours: distinct on a grey image, the same for an author everywhere."""

Db = Session | Engine


def author_color(subject: str) -> str:
    """The colour of an author's marks, the same in every browser and document."""
    digest = hashlib.sha256(subject.encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


# -- reading (system: no policy) ------------------------------------------------------------------


def _session(db: Db) -> tuple[Session, bool]:
    return (db, False) if isinstance(db, Session) else (Session(db), True)


def list_marks(db: Db, case_id: int) -> list[Mark]:
    """The case's marks (not deleted), oldest first. No policy: for the system's own work
    (archiving on signing, the protocol); readers go through :func:`marks_of_case`."""
    session, own = _session(db)
    try:
        rows = session.exec(select(CaseMark.body).where(
            CaseMark.case_id == case_id, col(CaseMark.deleted).is_(False))
            .order_by(col(CaseMark.created_at), col(CaseMark.id))).all()
    finally:
        if own:
            session.close()
    return [Mark.model_validate_json(body) for body in rows]


def list_key_images(db: Db, case_id: int) -> list[KeyImage]:
    """The case's key images in the order they were marked (no policy, as :func:`list_marks`)."""
    session, own = _session(db)
    try:
        rows = list(session.exec(select(CaseKeyImage).where(
            CaseKeyImage.case_id == case_id).order_by(col(CaseKeyImage.id))))
    finally:
        if own:
            session.close()
    return [key_image_of(r) for r in rows]


def key_image_of(row: CaseKeyImage) -> KeyImage:
    return KeyImage(
        image=ImageRef(study_uid=row.study_uid, series_uid=row.series_uid,
                       sop_instance_uid=row.sop_instance_uid,
                       sop_class_uid=row.sop_class_uid or None, frame=row.frame or None),
        caption=row.caption, series_description=row.series_description,
        instance_number=row.instance_number, author_subject=row.author_subject,
        author_name=row.author_name)


def key_sops_by_study(session: Session, case_id: int) -> dict[str, list[str]]:
    """Study UID -> the SOP UIDs of its key images (the case API's per-study list)."""
    found: dict[str, list[str]] = {}
    for image in list_key_images(session, case_id):
        sops = found.setdefault(image.image.study_uid, [])
        if image.image.sop_instance_uid not in sops:
            sops.append(image.image.sop_instance_uid)
    return found


# -- who ---------------------------------------------------------------------------------------


def _invited(session: Session, principal: Principal, study_uids: Sequence[str]) -> bool:
    """An active consilium invitation of the caller to the case's studies."""
    if principal.user_id is None or not study_uids:
        return False
    stamp = now()
    grants = session.exec(select(Grant).where(
        Grant.grantee_user_id == principal.user_id, Grant.kind == GrantKind.CONSILIUM.value,
        col(Grant.study_uid).in_(list(study_uids)), col(Grant.revoked_at).is_(None))).all()
    return any(g.expires_at is None or aware(g.expires_at) > stamp for g in grants)


def load_markable(session: Session, principal: Principal, case_id: int) -> ConsultCase:
    """The case, for someone who may read and draw its marks; else "no such case"."""
    case = session.get(ConsultCase, case_id)
    if case is None or not may_mark_case(principal, parties(case), _invited(
            session, principal, case_study_uids(session, case_id))):
        raise NotFound("no such case")
    return case


def check_markable(ctx: ConsultContext, principal: Principal, case_id: int) -> None:
    """The caller may read and draw the case's marks (else "no such case")."""
    with Session(ctx.engine) as session:
        load_markable(session, principal, case_id)


def _writable(case: ConsultCase) -> None:
    if CaseStatus(case.status) in FINAL_STATUSES:
        raise Conflict(f"the marks of a {case.status} case no longer change")


def marks_of_case(ctx: ConsultContext, principal: Principal, case_id: int) -> list[Mark]:
    with Session(ctx.engine) as session:
        load_markable(session, principal, case_id)
        return list_marks(session, case_id)


def key_images_of_case(ctx: ConsultContext, principal: Principal, case_id: int
                       ) -> list[KeyImage]:
    with Session(ctx.engine) as session:
        load_markable(session, principal, case_id)
        return list_key_images(session, case_id)


# -- what a mark may be --------------------------------------------------------------------------


def checked_mark(engine: Engine, study_uids: Sequence[str], mark: Mark, subject: str,
                 name: str, institution: str) -> Mark:
    """The mark as the case keeps it: on an image of the case's studies (or in the volume of
    one of its series), with enough points for its kind, attributed to its author."""
    need = MIN_POINTS[mark.kind]
    if mark.image is not None:
        if len(mark.points) < need:
            raise InvalidInput(f"a {mark.kind.value} needs {need} points")
        ref = mark.image
        facts = catalog.instance_facts(engine, [ref.sop_instance_uid]).get(ref.sop_instance_uid)
        if (ref.study_uid not in study_uids or facts is None
                or facts.study_uid != ref.study_uid or facts.series_uid != ref.series_uid):
            raise InvalidInput(f"image {ref.sop_instance_uid} is not one of the case's")
        if ref.frame is not None and ref.frame > facts.frames:
            raise InvalidInput(f"image {ref.sop_instance_uid} has {facts.frames} frame(s)")
        if ref.sop_class_uid is None:
            mark = mark.model_copy(update={"image": ref.model_copy(
                update={"sop_class_uid": facts.sop_class_uid or None})})
    elif mark.series_uid and mark.frame_of_reference_uid and mark.points3d:
        if len(mark.points3d) < need:
            raise InvalidInput(f"a {mark.kind.value} needs {need} points")
        rows = catalog.series_instances(engine, mark.series_uid)
        if not rows or rows[0].study_uid not in study_uids:
            raise InvalidInput(f"series {mark.series_uid} is not one of the case's")
    else:
        raise InvalidInput("a mark is on an image (image, points) or in the volume of a series "
                           "(series_uid, frame_of_reference_uid, points3d)")
    return mark.model_copy(update={
        "author_subject": subject, "author_name": name, "author_institution": institution,
        "color": author_color(subject), "source": MarkSource.CASE,
        "source_sop_instance_uid": None})


def _mark_columns(mark: Mark) -> dict[str, Any]:
    study = mark.image.study_uid if mark.image else ""
    series = mark.image.series_uid if mark.image else (mark.series_uid or "")
    return {"kind": mark.kind.value, "study_uid": study, "series_uid": series,
            "body": mark.model_dump_json(), "author_name": mark.author_name,
            "author_institution": mark.author_institution}


# -- writing (HTTP) -------------------------------------------------------------------------------


def put_mark(ctx: ConsultContext, principal: Principal, case_id: int, mark: Mark,
             actor: Actor | None = None) -> Mark:
    """Add or replace the caller's mark ``mark.id`` (last writer wins); answers it as kept."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = load_markable(session, principal, case_id)
        _writable(case)
        kept = checked_mark(ctx.engine, case_study_uids(session, case_id), mark,
                            principal.subject, principal.display_name,
                            principal.institution_id or "")
        row = session.exec(select(CaseMark).where(
            CaseMark.case_id == case_id, CaseMark.mark_id == mark.id)).first()
        stamp = now()
        if row is None:
            _room_for_one_more(session, case_id)
            row = CaseMark(case_id=case_id, mark_id=mark.id, author_subject=principal.subject,
                           created_at=stamp, updated_at=stamp, **_mark_columns(kept))
        else:
            if not may_change_mark(principal, row.author_subject):
                raise Forbidden("only its author changes a mark")
            for key, value in _mark_columns(kept).items():
                setattr(row, key, value)
            row.version += 1
            row.deleted = False
            row.updated_at = stamp
            row.session_id, row.seq = None, None
        session.add(row)
        session.commit()
    _audit(ctx, principal, actor, case, "case mark", {"mark": mark.id, "op": "put"})
    notify(ctx, case, "marks")
    return kept


def _room_for_one_more(session: Session, case_id: int) -> None:
    count = session.exec(select(func.count()).select_from(CaseMark).where(
        CaseMark.case_id == case_id, col(CaseMark.deleted).is_(False))).one()
    if int(count) >= MAX_MARKS_PER_CASE:
        raise Conflict(f"a case keeps at most {MAX_MARKS_PER_CASE} marks")


def delete_mark(ctx: ConsultContext, principal: Principal, case_id: int, mark_id: str,
                actor: Actor | None = None) -> None:
    """Delete the caller's mark (a tombstone stays; see the module)."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = load_markable(session, principal, case_id)
        _writable(case)
        row = session.exec(select(CaseMark).where(
            CaseMark.case_id == case_id, CaseMark.mark_id == mark_id)).first()
        if row is None or row.deleted:
            raise NotFound("no such mark")
        if not may_change_mark(principal, row.author_subject):
            raise Forbidden("only its author deletes a mark")
        row.deleted, row.version, row.updated_at = True, row.version + 1, now()
        row.session_id, row.seq = None, None
        session.add(row)
        session.commit()
    _audit(ctx, principal, actor, case, "case mark", {"mark": mark_id, "op": "delete"})
    notify(ctx, case, "marks")


def put_key_image(ctx: ConsultContext, principal: Principal, case_id: int, image: ImageRef,
                  caption: str = "", actor: Actor | None = None) -> KeyImage:
    """Mark an image of the case's studies as a key image (again: its caption changes)."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = load_markable(session, principal, case_id)
        _writable(case)
        uids = case_study_uids(session, case_id)
        facts = catalog.instance_facts(ctx.engine, [image.sop_instance_uid]).get(
            image.sop_instance_uid)
        if (image.study_uid not in uids or facts is None or facts.study_uid != image.study_uid
                or facts.series_uid != image.series_uid):
            raise InvalidInput(f"image {image.sop_instance_uid} is not one of the case's")
        if image.frame is not None and image.frame > facts.frames:
            raise InvalidInput(f"image {image.sop_instance_uid} has {facts.frames} frame(s)")
        row = session.exec(select(CaseKeyImage).where(
            CaseKeyImage.case_id == case_id,
            CaseKeyImage.sop_instance_uid == image.sop_instance_uid,
            CaseKeyImage.frame == (image.frame or 0))).first()
        if row is None:
            count = session.exec(select(func.count()).select_from(CaseKeyImage).where(
                CaseKeyImage.case_id == case_id)).one()
            if int(count) >= MAX_KEY_IMAGES_PER_CASE:
                raise Conflict(f"a case keeps at most {MAX_KEY_IMAGES_PER_CASE} key images")
            row = _key_row(case_id, facts, image.frame or 0, principal, caption.strip())
        else:
            if not may_change_mark(principal, row.author_subject):
                raise Forbidden("only its author changes a key image")
            row.caption = caption.strip()
        session.add(row)
        session.commit()
        kept = key_image_of(row)
    _audit(ctx, principal, actor, case, "case key image",
           {"sop": image.sop_instance_uid, "frame": image.frame, "op": "put"})
    notify(ctx, case, "key-images")
    return kept


def _key_row(case_id: int, facts: catalog.InstanceFacts, frame: int, principal: Principal,
             caption: str) -> CaseKeyImage:
    return CaseKeyImage(
        case_id=case_id, study_uid=facts.study_uid, series_uid=facts.series_uid,
        sop_instance_uid=facts.sop_uid, sop_class_uid=facts.sop_class_uid, frame=frame,
        instance_number=facts.instance_number, series_description=facts.series_description[:64],
        caption=caption, author_subject=principal.subject, author_name=principal.display_name,
        created_at=now())


def delete_key_image(ctx: ConsultContext, principal: Principal, case_id: int,
                     sop_instance_uid: str, frame: int | None = None,
                     actor: Actor | None = None) -> None:
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = load_markable(session, principal, case_id)
        _writable(case)
        row = session.exec(select(CaseKeyImage).where(
            CaseKeyImage.case_id == case_id, CaseKeyImage.sop_instance_uid == sop_instance_uid,
            CaseKeyImage.frame == (frame or 0))).first()
        if row is None:
            raise NotFound("no such key image")
        if not may_change_mark(principal, row.author_subject):
            raise Forbidden("only its author removes a key image")
        session.delete(row)
        session.commit()
    _audit(ctx, principal, actor, case, "case key image",
           {"sop": sop_instance_uid, "frame": frame, "op": "delete"})
    notify(ctx, case, "key-images")


def replace_key_images(engine: Engine, session: Session, case: ConsultCase,
                       principal: Principal, key_images: dict[str, list[str]]) -> None:
    """A draft's key images as the request form lists them (study UID -> SOP UIDs, each
    checked by the caller to be an image of its study): those not listed go, new ones come
    with their series and instance number, kept ones keep their caption and author."""
    case_id = case.id or 0
    wanted = {(study, sop) for study, sops in key_images.items() for sop in sops}
    rows = list(session.exec(select(CaseKeyImage).where(
        CaseKeyImage.case_id == case_id)))
    have = {(r.study_uid, r.sop_instance_uid) for r in rows}
    for row in rows:
        if (row.study_uid, row.sop_instance_uid) not in wanted:
            session.delete(row)
    new = [sop for study, sops in key_images.items() for sop in sops if (study, sop) not in have]
    facts = catalog.instance_facts(engine, new)
    for study, sops in key_images.items():
        for sop in sops:
            found = facts.get(sop)
            if (study, sop) in have or found is None:
                continue
            session.add(_key_row(case_id, found, 0, principal, ""))


def _audit(ctx: ConsultContext, principal: Principal, actor: Actor | None, case: ConsultCase,
           what: str, detail: dict[str, Any]) -> None:
    ctx.audit.record(actor or actor_of(principal), AuditAction.STORE,
                     patient_id=case.patient_id, patient_name=case.patient_name,
                     data_institution=case.requester_institution,
                     detail={"what": what, "case": case.id, **detail})


# -- the live consilium's writes (in the sequencer's transaction) ----------------------------------


def mark_author(engine: Engine, case_id: int, mark_id: str) -> str | None:
    """Who drew mark ``mark_id`` of the case (None: nobody yet)."""
    with engine.connect() as db:
        found = db.execute(core_select(col(CaseMark.author_subject)).where(
            col(CaseMark.case_id) == case_id, col(CaseMark.mark_id) == mark_id)).first()
    return None if found is None else str(found[0])


def live_mark_allowed(db: Connection, case_id: int, mark_id: str, actor: str,
                      deleting: bool) -> bool:
    """Whether a session's ``mark.put``/``mark.deleted`` by ``actor`` may have its seq: the
    mark is new (a put, while the case has room) or the actor's own (checked again in the
    transaction that numbers the change: two processes cannot both pass for one id)."""
    found = db.execute(core_select(col(CaseMark.author_subject), col(CaseMark.deleted)).where(
        col(CaseMark.case_id) == case_id, col(CaseMark.mark_id) == mark_id)).first()
    if found is None:
        if deleting:
            return False
        count = db.execute(core_select(func.count()).select_from(CaseMark).where(
            col(CaseMark.case_id) == case_id, col(CaseMark.deleted).is_(False))).scalar_one()
        return int(count) < MAX_MARKS_PER_CASE
    return str(found[0]) == actor and not (deleting and bool(found[1]))


def store_live_mark(db: Connection, case_id: int, payload: dict[str, Any], actor: str,
                    session_id: str, seq: int, at: datetime, deleting: bool) -> None:
    """Write a session's mark change into the case (same transaction as the change)."""
    if deleting:
        db.execute(update(CaseMark).where(and_(
            col(CaseMark.case_id) == case_id, col(CaseMark.mark_id) == str(payload["id"])))
            .values(deleted=True, version=col(CaseMark.version) + 1, updated_at=at,
                    session_id=session_id, seq=seq))
        return
    mark = Mark.model_validate(payload["mark"])
    columns = {**_mark_columns(mark), "updated_at": at, "session_id": session_id, "seq": seq}
    done = db.execute(update(CaseMark).where(and_(
        col(CaseMark.case_id) == case_id, col(CaseMark.mark_id) == mark.id))
        .values(deleted=False, version=col(CaseMark.version) + 1, **columns))
    if not done.rowcount:
        db.execute(insert(CaseMark).values(case_id=case_id, mark_id=mark.id,
                                           author_subject=actor, version=1, deleted=False,
                                           created_at=at, **columns))


def marks_at_opening(db: Connection, case_id: int) -> list[dict[str, Any]]:
    """The case's marks as a session's ``session.opened`` carries them (its starting state)."""
    rows = db.execute(core_select(col(CaseMark.body)).where(
        col(CaseMark.case_id) == case_id, col(CaseMark.deleted).is_(False))
        .order_by(col(CaseMark.created_at), col(CaseMark.id))).all()
    return [json.loads(r[0]) for r in rows]
