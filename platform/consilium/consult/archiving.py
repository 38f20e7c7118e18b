"""Writing a signed conclusion into the archive beside each of its studies, and again until
it is there.

On signing (:func:`consilium.consult.workflow.conclude` and ``amend``), every linked study gets
two new instances in a new series each: an Encapsulated PDF (the same bytes as
``GET /api/cases/{id}/conclusions/{version}.pdf``) and a Basic Text SR
(:mod:`consilium.consult.conclusion_dicom`). They enter the archive through
:func:`consilium.archive.ingest.ingest_part10`, owned by the study's institution, so the
hospital's own DICOM nodes find the opinion beside the images.

Failure policy: the signature is committed first and is what counts. Writing into the archive
comes after; a failure there (a study whose files are gone, a full disk, a refused instance) is
logged at ERROR and recorded as a ``failed`` row with its reason; the conclusion stays signed.
:func:`retry_archiving` writes what failed again (before every signing and at every start).
UIDs and bytes are derived from the signed conclusion only, so a retry of an instance that did
get stored is an idempotent duplicate.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from sqlmodel import Session, col, select

from consilium.archive import catalog
from consilium.archive.ingest import IngestSource, ingest_part10
from consilium.audit import Actor, AuditAction, AuditOutcome
from consilium.consult.cases import aware, now, signed_version
from consilium.consult.conclusion_dicom import (
    BASIC_TEXT_SR,
    ENCAPSULATED_PDF,
    basic_text_sr,
    derived_uid,
    encapsulated_pdf,
    part10,
)
from consilium.consult.conclusion_pdf import ensure_pdf
from consilium.consult.context import ConsultContext
from consilium.consult.models import ArchivedDocument, Conclusion, ConsultCase
from consilium.errors import NotFound

log = logging.getLogger(__name__)


def archive_conclusion(ctx: ConsultContext, conclusion_id: int) -> list[ArchivedDocument]:
    """Write the signed conclusion beside each of its studies (PDF and SR); record each
    outcome. Never raises: the conclusion is signed whatever happens here."""
    if ctx.documents is None:
        return []
    try:
        with Session(ctx.engine) as session:
            conclusion = session.get(Conclusion, conclusion_id)
        if conclusion is None:
            return []
        case, conclusion, uids = signed_version(ctx, conclusion.case_id, conclusion.version)
        pdf = functools.cache(lambda: ensure_pdf(ctx, case, conclusion, uids))
        return [_archive_one(ctx, case, conclusion, uid, kind, pdf)
                for uid in uids for kind in ("pdf", "sr")]
    except Exception:
        log.exception("ARCHIVING FAILED for conclusion %s; it stays signed", conclusion_id)
        return []


def _archive_one(ctx: ConsultContext, case: ConsultCase, conclusion: Conclusion,
                 study_uid: str, kind: str, pdf: Callable[[], bytes]) -> ArchivedDocument:
    config = ctx.files
    names = config.institution_names
    seed = (case.id, conclusion.version, conclusion.content_sha256,
            aware(conclusion.signed_at).isoformat(), study_uid, kind)
    series_uid, sop_uid = derived_uid("series", *seed), derived_uid("instance", *seed)
    sop_class = ENCAPSULATED_PDF if kind == "pdf" else BASIC_TEXT_SR
    status, reason, owner = "stored", "", ""
    try:
        source, owner = catalog.study_header(config.store, study_uid)
        institution = names.get(conclusion.author_institution, conclusion.author_institution)
        if kind == "pdf":
            ds = encapsulated_pdf(source, pdf(), conclusion, sop_uid, series_uid, institution)
        else:
            ds = basic_text_sr(source, conclusion, sop_uid, series_uid, institution,
                               _predecessor(ctx, conclusion, study_uid))
        result = ingest_part10(config.store, part10(ds), IngestSource(owner, "", "consult"))
        if not result.ok:
            status, reason = "failed", f"refused by the archive: {result.reason}"
    except Exception as exc:
        log.exception("archiving the %s of case %s v%s into study %s failed", kind, case.id,
                      conclusion.version, study_uid)
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    if status == "failed":
        log.error("ARCHIVING FAILED: %s of case %s version %s into study %s: %s", kind, case.id,
                  conclusion.version, study_uid, reason)
    ctx.audit.record(
        Actor(conclusion.author, conclusion.author_name, conclusion.author_institution,
              channel="consult"), AuditAction.STORE,
        AuditOutcome.SUCCESS if status == "stored" else AuditOutcome.FAILURE,
        study_uid=study_uid, owner=owner,  # written for its owner: its patient is named
        detail={"what": f"conclusion {kind}", "case": case.id, "version": conclusion.version,
                "sop_instance_uid": sop_uid, **({"reason": reason} if reason else {})})
    with Session(ctx.engine, expire_on_commit=False) as session:
        row = session.exec(select(ArchivedDocument).where(
            ArchivedDocument.conclusion_id == conclusion.id,
            ArchivedDocument.study_uid == study_uid, ArchivedDocument.kind == kind)).first()
        row = row or ArchivedDocument(case_id=case.id or 0, conclusion_id=conclusion.id or 0,
                                      study_uid=study_uid, kind=kind, status=status, at=now())
        row.series_uid, row.sop_instance_uid, row.sop_class_uid = series_uid, sop_uid, sop_class
        row.status, row.reason, row.at = status, reason[:1000], now()
        session.add(row)
        session.commit()
    return row


def _predecessor(ctx: ConsultContext, conclusion: Conclusion,
                 study_uid: str) -> ArchivedDocument | None:
    """The SR of the version this one replaces, in the same study, if it was stored."""
    if not conclusion.replaces_version:
        return None
    with Session(ctx.engine) as session:
        return session.exec(select(ArchivedDocument).join(
            Conclusion, col(Conclusion.id) == col(ArchivedDocument.conclusion_id)).where(
            Conclusion.case_id == conclusion.case_id,
            Conclusion.version == conclusion.replaces_version,
            ArchivedDocument.study_uid == study_uid, ArchivedDocument.kind == "sr",
            ArchivedDocument.status == "stored")).first()


def retry_archiving(ctx: ConsultContext) -> int:
    """Write again what failed to be archived; the number still failing. Never raises."""
    if ctx.documents is None:
        return 0
    try:
        return _retry(ctx)
    except Exception:
        log.exception("retrying the archiving of conclusions failed")
        return -1


def _retry(ctx: ConsultContext) -> int:
    with Session(ctx.engine) as session:
        failed = list(session.exec(select(ArchivedDocument).where(
            ArchivedDocument.status == "failed").order_by(col(ArchivedDocument.id)).limit(100)))
    left = 0
    for row in failed:
        try:
            case, conclusion, uids = signed_version(ctx, row.case_id, _version_of(ctx, row))
        except NotFound:
            continue
        pdf = functools.partial(ensure_pdf, ctx, case, conclusion, uids)
        if _archive_one(ctx, case, conclusion, row.study_uid, row.kind, pdf).status != "stored":
            left += 1
    return left


def _version_of(ctx: ConsultContext, row: ArchivedDocument) -> int:
    with Session(ctx.engine) as session:
        conclusion = session.get(Conclusion, row.conclusion_id)
    if conclusion is None:
        raise NotFound("no such conclusion")
    return conclusion.version


def archived_of(ctx: ConsultContext, case_id: int) -> dict[int, list[ArchivedDocument]]:
    """What each conclusion of a case (by its id) wrote into the archive, stored or failed."""
    with Session(ctx.engine) as session:
        rows = list(session.exec(select(ArchivedDocument).where(
            ArchivedDocument.case_id == case_id).order_by(col(ArchivedDocument.id))))
    found: dict[int, list[ArchivedDocument]] = {}
    for row in rows:
        found.setdefault(row.conclusion_id, []).append(row)
    return found


@dataclass(frozen=True)
class Stored:
    """What :func:`store_beside` did: ``stored`` or ``failed`` (with the reason), and the
    study's owner (empty when the study was not found)."""

    status: str
    reason: str
    owner: str


def store_beside(ctx: ConsultContext, study_uid: str, build: Callable[[Dataset, str], Dataset],
                 actor: Actor, detail: dict[str, Any]) -> Stored:
    """Write one document instance into the archive beside a study, as a conclusion's are: the
    instance ``build`` makes from the study's first stored header and owner (copying patient
    and study) enters through ingest, owned by the study's institution, and the write is
    audited for that owner. Never raises: a failure is logged at ERROR and returned, for the
    caller to keep and retry (other signed documents, e.g. a consilium's protocol, use this)."""
    config = ctx.files
    status, reason, owner = "stored", "", ""
    try:
        source, owner = catalog.study_header(config.store, study_uid)
        result = ingest_part10(config.store, part10(build(source, owner)),
                               IngestSource(owner, "", "consult"))
        if not result.ok:
            status, reason = "failed", f"refused by the archive: {result.reason}"
    except Exception as exc:
        log.exception("archiving %s into study %s failed", detail.get("what"), study_uid)
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    if status == "failed":
        log.error("ARCHIVING FAILED: %s into study %s: %s", detail, study_uid, reason)
    ctx.audit.record(actor, AuditAction.STORE,
                     AuditOutcome.SUCCESS if status == "stored" else AuditOutcome.FAILURE,
                     study_uid=study_uid, owner=owner,
                     detail={**detail, **({"reason": reason} if reason else {})})
    return Stored(status, reason[:1000], owner)
