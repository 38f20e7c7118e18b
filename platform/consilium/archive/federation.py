"""One search over the archive and every PACS the caller may query, each answer labelled with
where it lives.

The sources are asked in parallel and waited for until one deadline
(``federation.deadline``): a PACS that has not answered by then is flagged ``timeout`` and the
others are shown; one that failed is flagged ``error`` with its reason. A late PACS's worker
thread ends by itself (its own time-outs are cut to the deadline), and the pool is bounded, so
a dead PACS costs at most one thread per search until then.

Who may see what: the archive part goes through the gate (own institution and grants, one
``query`` event); a PACS is asked only for clinicians of its own institution
(:func:`consilium.identity.policy.may_query_pacs`), and each PACS asked leaves a ``query``
event with its outcome. A study that the archive holds is listed once, from the archive, with
the PACS that also hold it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Engine

from consilium.archive import query as q
from consilium.archive import remote, remote_web
from consilium.archive.access import ArchiveAccess, Reader
from consilium.archive.search import Search, search
from consilium.audit import AuditAction, AuditOutcome, AuditTrail
from consilium.identity.policy import may_query_pacs
from consilium.settings import DicomNode, DicomWebPacs, NodeKind, Settings

ARCHIVE = "archive"
POOL_THREADS = 16  # searches of all users at once; a source beyond it waits its turn


class SourceKind(StrEnum):
    ARCHIVE = "archive"
    DIMSE = "dimse"  # C-FIND / C-MOVE
    DICOMWEB = "dicomweb"  # QIDO-RS / WADO-RS


class SourceState(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"  # did not answer before the deadline
    ERROR = "error"  # answered with a failure, refused, unreachable


@dataclass(frozen=True)
class Source:
    """Where studies can live: the archive, or one PACS of an institution."""

    id: str  # "archive", "dimse:<AE>", "dicomweb:<id>"
    kind: SourceKind
    institution: str
    label: str
    node: DicomNode | None = None
    web: DicomWebPacs | None = None


def sources(settings: Settings) -> list[Source]:
    """The archive and every configured PACS (DIMSE nodes of kind pacs with an address, and
    the DICOMweb ones)."""
    names = {i.id: i.name for i in settings.institutions}
    found = [Source(ARCHIVE, SourceKind.ARCHIVE, "", "Consilium archive")]
    for inst in settings.institutions:
        for node in inst.nodes:
            if node.kind is NodeKind.PACS and node.reachable:
                found.append(Source(f"dimse:{node.ae_title}", SourceKind.DIMSE, inst.id,
                                    f"{names[inst.id]}: {node.description or node.ae_title}",
                                    node=node))
    for peer in settings.federation_dicomweb:
        found.append(Source(f"dicomweb:{peer.id}", SourceKind.DICOMWEB, peer.institution,
                            f"{names.get(peer.institution, peer.institution)}: "
                            f"{peer.description or peer.id}", web=peer))
    return found


def source_by_id(settings: Settings, source_id: str) -> Source | None:
    return next((s for s in sources(settings) if s.id == source_id), None)


class SourcePublic(BaseModel):
    """A source of a federated search and how it answered."""

    id: str
    kind: SourceKind
    institution: str
    label: str
    state: SourceState = SourceState.OK
    error: str = ""
    matches: int = 0
    elapsed_ms: int = 0


class FederatedStudy(BaseModel):
    """A study in one list, labelled with where it lives."""

    study_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    study_date: str
    description: str
    accession: str
    modalities: list[str]
    series: int | None
    instances: int | None
    source: str = Field(description="the source id: 'archive' or a PACS")
    source_label: str
    institution: str = Field(description="whose study it is")
    in_archive: bool
    also_in: list[str] = Field(default_factory=list, description="other sources holding it")


class FederatedAnswer(BaseModel):
    studies: list[FederatedStudy]
    sources: list[SourcePublic]


@dataclass
class _Found:
    studies: list[remote.RemoteStudy] = field(default_factory=list)
    institutions: dict[str, str] = field(default_factory=dict)  # archive: study -> owner


_POOL = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="federation")

ARCHIVE_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "StudyDate",
                "StudyDescription", "AccessionNumber", "ModalitiesInStudy",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")


def _archive_search(engine: Engine, access: ArchiveAccess, reader: Reader,
                    filters: remote.StudyFilters, limit: int) -> _Found:
    keys = dict(filters.keys())
    if filters.modalities:
        keys["ModalitiesInStudy"] = "\\".join(filters.modalities)
    reach = access.reach(reader)
    rows, _more = search(engine, Search(q.Level.STUDY, keys, ARCHIVE_KEYS, limit=limit),
                           reach.institutions, reach.granted)
    found = _Found()
    for row in rows:
        def text(keyword: str, r: dict[str, Any] = row) -> str:
            value = r.get(keyword)
            return "" if value is None else str(value)

        def count(keyword: str, r: dict[str, Any] = row) -> int | None:
            value = r.get(keyword)
            return int(value) if isinstance(value, int) else None

        modalities = tuple(m for m in text("ModalitiesInStudy").split("\\") if m)
        study = remote.RemoteStudy(
            study_uid=text("StudyInstanceUID"), patient_id=text("PatientID"),
            patient_name=text("PatientName"), patient_birth_date=text("PatientBirthDate"),
            study_date=text("StudyDate"), description=text("StudyDescription"),
            accession=text("AccessionNumber"), modalities=modalities,
            series=count("NumberOfStudyRelatedSeries"),
            instances=count("NumberOfStudyRelatedInstances"), in_archive=True)
        found.studies.append(study)
        found.institutions[study.study_uid] = str(row.get("_institution", ""))
    access.searched(reader, {"what": "federated search", "keys": filters.keys(),
                             "results": len(found.studies)})
    return found


def _pacs_search(settings: Settings, source: Source, filters: remote.StudyFilters,
                 deadline: float, limit: int) -> _Found:
    if source.node is not None:  # the association's time-outs cut to the deadline
        quick = settings.model_copy(update={"dicom_remote_timeout": max(0.5, deadline) + 1})
        return _Found(remote.find_remote_studies(quick, source.node, filters, limit))
    assert source.web is not None
    return _Found(remote_web.find_web_studies(source.web, filters, timeout=max(0.5, deadline),
                                              limit=limit))


@dataclass(frozen=True)
class FederatedSearch:
    """What a federated search needs of the process (built once, by the routes)."""

    settings: Settings
    engine: Engine
    access: ArchiveAccess
    audit: AuditTrail

    def allowed_sources(self, reader: Reader) -> list[Source]:
        """The archive, and the PACS of the reader's own institution (clinicians)."""
        return [s for s in sources(self.settings)
                if s.kind is SourceKind.ARCHIVE
                or may_query_pacs(reader.principal, s.institution)]

    def search(self, reader: Reader, filters: remote.StudyFilters, limit: int = 200,
               deadline: float | None = None) -> FederatedAnswer:
        """Every allowed source in parallel, answered at the deadline at the latest."""
        wait_for = self.settings.federation_deadline if deadline is None else deadline
        started = time.monotonic()
        asked = self.allowed_sources(reader)
        futures: dict[str, Future[_Found]] = {}
        for source in asked:
            if source.kind is SourceKind.ARCHIVE:
                futures[source.id] = _POOL.submit(_archive_search, self.engine, self.access,
                                                  reader, filters, limit)
            else:
                futures[source.id] = _POOL.submit(_pacs_search, self.settings, source,
                                                  filters, wait_for, limit)
        done, _late = wait(list(futures.values()), timeout=wait_for)
        elapsed = int((time.monotonic() - started) * 1000)
        statuses: list[SourcePublic] = []
        results: dict[str, _Found] = {}
        for source in asked:
            future = futures[source.id]
            status = SourcePublic(id=source.id, kind=source.kind,
                                  institution=source.institution, label=source.label,
                                  elapsed_ms=elapsed)
            if future not in done:
                status.state = SourceState.TIMEOUT
                status.error = f"did not answer within {wait_for:g} s"
                future.add_done_callback(lambda f: f.exception())  # never an unread error
            else:
                error = future.exception()
                if error is None:
                    results[source.id] = future.result()
                    status.matches = len(results[source.id].studies)
                else:
                    status.state = SourceState.ERROR
                    status.error = (error.message if isinstance(error, remote.RemotePacsError)
                                    else f"failed ({type(error).__name__})")
            statuses.append(status)
            if source.kind is not SourceKind.ARCHIVE:
                self._record(reader, source, filters, status)
        return FederatedAnswer(studies=merge(asked, results), sources=statuses)

    def _record(self, reader: Reader, source: Source, filters: remote.StudyFilters,
                status: SourcePublic) -> None:
        exact_id = filters.patient_id if not set("*?") & set(filters.patient_id) else ""
        detail: dict[str, Any] = {"what": "federated search", "source": source.id,
                                  "keys": filters.keys(), "state": status.state.value}
        if status.state is SourceState.OK:
            detail["matches"] = status.matches
        else:
            detail["error"] = status.error
        self.audit.submit(reader.actor, AuditAction.QUERY,
                          AuditOutcome.SUCCESS if status.state is SourceState.OK
                          else AuditOutcome.FAILURE, patient_id=exact_id,
                          data_institution=source.institution, detail=detail)


def merge(asked: Sequence[Source], results: dict[str, _Found]) -> list[FederatedStudy]:
    """One row per study: from the archive when it holds it, else from the first PACS that
    answered it; every other source holding it in ``also_in``. Newest first."""
    rows: dict[str, FederatedStudy] = {}
    for source in asked:  # the archive first: sources() lists it first
        found = results.get(source.id)
        if found is None:
            continue
        for study in found.studies:
            existing = rows.get(study.study_uid)
            if existing is not None:
                existing.also_in.append(source.id)
                continue
            institution = (found.institutions.get(study.study_uid, "")
                           if source.kind is SourceKind.ARCHIVE else source.institution)
            rows[study.study_uid] = FederatedStudy(
                **{k: v for k, v in study.as_json().items() if k != "in_archive"},
                source=source.id, source_label=source.label, institution=institution,
                in_archive=source.kind is SourceKind.ARCHIVE)
    return sorted(rows.values(), key=lambda s: (s.study_date, s.study_uid), reverse=True)

