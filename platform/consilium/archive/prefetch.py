"""A consult's remote studies: studies still only in the requesting hospital's PACS that a
referring doctor adds to a draft request, fetched into the archive when the request is
submitted (not before: a draft may never be sent) and shared with the target institution as the
request's own studies are (a grant with the case's reference, which ends with the case).

The consult domain knows nothing of this: the application calls :meth:`Prefetch.on_case` with
every case change it is told of (``submit`` starts the fetches), and asks the consult domain
whether the caller may add to a case before :func:`add_remote_study` is called. Each fetch is a
retrieve job (:mod:`consilium.archive.retrieval`: progress, audit as the doctor who added it).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import Engine, UniqueConstraint
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from consilium.archive.federation import Source
from consilium.archive.retrieval import JobState, Retrievals, RetrieveJob
from consilium.audit import Actor, AuditTrail
from consilium.errors import Conflict
from consilium.identity.grants import grant_study
from consilium.identity.models import GrantKind

log = logging.getLogger(__name__)


class RemoteState(StrEnum):
    PENDING = "pending"  # waits for the request to be submitted
    FETCHING = "fetching"
    FETCHED = "fetched"  # in the archive and shared with the target
    FAILED = "failed"


class CaseRemoteStudy(SQLModel, table=True):
    __tablename__ = "case_remote_study"
    __table_args__ = (UniqueConstraint("case_id", "study_uid"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(index=True)
    source: str = Field(max_length=48)
    study_uid: str = Field(max_length=64)
    expected: int | None = None
    requested_by: str = Field(max_length=256)
    requested_by_name: str = Field(default="", max_length=256)
    institution: str = Field(max_length=64, description="the requester's (and PACS's)")
    state: str = Field(default=RemoteState.PENDING.value, max_length=16)
    job_id: str = Field(default="", max_length=32)
    error: str = Field(default="", max_length=512)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class CaseRemoteStudyPublic(BaseModel):
    case_id: int
    source: str
    study_uid: str
    expected: int | None
    state: RemoteState
    job_id: str
    error: str


def _public(row: CaseRemoteStudy) -> CaseRemoteStudyPublic:
    return CaseRemoteStudyPublic(case_id=row.case_id, source=row.source,
                                 study_uid=row.study_uid, expected=row.expected,
                                 state=RemoteState(row.state), job_id=row.job_id,
                                 error=row.error)


def add_remote_study(engine: Engine, case_id: int, source: Source, study_uid: str,
                     expected: int | None, requester: Actor) -> CaseRemoteStudyPublic:
    """Record a remote study of a draft (the caller checked the case and the source)."""
    row = CaseRemoteStudy(case_id=case_id, source=source.id, study_uid=study_uid,
                          expected=expected, requested_by=requester.subject[:256],
                          requested_by_name=requester.name[:256],
                          institution=source.institution)
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        try:
            session.commit()
        except IntegrityError as exc:
            raise Conflict("the request already has this study") from exc
        session.refresh(row)
    return _public(row)


def remote_studies(engine: Engine, case_id: int) -> list[CaseRemoteStudyPublic]:
    with Session(engine) as session:
        rows = session.exec(select(CaseRemoteStudy).where(
            CaseRemoteStudy.case_id == case_id).order_by(col(CaseRemoteStudy.id))).all()
        return [_public(r) for r in rows]


class Prefetch:
    """Starts the fetches of a submitted request's remote studies and shares what arrived."""

    def __init__(self, engine: Engine, audit: AuditTrail, retrievals: Retrievals,
                 sources: dict[str, Source]) -> None:
        self.engine = engine
        self.audit = audit
        self.retrievals = retrievals
        self.sources = sources  # by id, from the configuration

    def on_case(self, case_id: int, what: str, target_institution: str) -> None:
        """Told of every case change (from any thread); ``submit`` starts the fetches."""
        if what not in ("submit", "resubmit"):
            return
        with Session(self.engine, expire_on_commit=False) as session:
            pending = list(session.exec(select(CaseRemoteStudy).where(
                CaseRemoteStudy.case_id == case_id,
                CaseRemoteStudy.state == RemoteState.PENDING.value)).all())
        for row in pending:
            self._start(row, target_institution)

    def _start(self, row: CaseRemoteStudy, target: str) -> None:
        source = self.sources.get(row.source)
        requester = Actor(row.requested_by, row.requested_by_name, row.institution, "", "web")
        if source is None:
            self._set(row.id, RemoteState.FAILED, error=f"source {row.source} is no longer "
                      "configured")
            return

        def done(job: RetrieveJob) -> None:
            if job.state is JobState.DONE and job.in_archive:
                grant_study(self.engine, self.audit, requester, row.study_uid,
                            institution_id=target, kind=GrantKind.CASE,
                            reference=f"case-{row.case_id}")
                self._set(row.id, RemoteState.FETCHED)
            else:
                self._set(row.id, RemoteState.FAILED, error=job.error or "not retrieved")

        try:
            job = self.retrievals.start(source, row.study_uid, requester, row.expected,
                                        on_done=done)
        except Exception as exc:  # a bad UID stored earlier: that study fails, not the case
            log.warning("prefetch of %s for case %s: %s", row.study_uid, row.case_id, exc)
            self._set(row.id, RemoteState.FAILED, error=str(exc)[:512])
            return
        self._set(row.id, RemoteState.FETCHING, job_id=job.id)

    def _set(self, row_id: int | None, state: RemoteState, *, job_id: str = "",
             error: str = "") -> None:
        with Session(self.engine) as session:
            row = session.get(CaseRemoteStudy, row_id)
            if row is None:
                return
            if state is not RemoteState.FETCHING or row.state == RemoteState.PENDING:
                row.state = state.value
            if job_id:
                row.job_id = job_id
            row.error = error[:512]
            session.add(row)
            session.commit()
