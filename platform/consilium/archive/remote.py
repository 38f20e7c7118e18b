"""A hospital's own PACS as a remote archive: study-level C-FIND, and C-MOVE of a study to our
own AE title, where it arrives through the normal C-STORE SCP and ingest (the PACS's calling AE
title makes it its institution's study).

Plain blocking functions (pynetdicom as SCU): web routes call them in a worker thread. Every
network or protocol problem becomes :class:`RemotePacsError` (answered 502), with a message a
clinician can act on.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from sqlalchemy import Engine, select

from consilium.archive.dimse.reactor import keep_responses_for_the_sender
from consilium.archive.models import studies
from consilium.errors import BadGateway, InvalidInput
from consilium.settings import DicomNode, Settings

log = logging.getLogger(__name__)

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
LITTLE_ENDIAN = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
MAX_RESULTS = 500  # a query matching more is stopped there: narrow it down

RETURN_KEYS = (
    "PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "StudyDate",
    "StudyDescription", "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE_RANGE_RE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_MODALITY_RE = re.compile(r"^[A-Z0-9_]{1,16}$")


class RemotePacsError(BadGateway):
    """The PACS cannot be reached, refused the association or failed the request."""


@dataclass(frozen=True)
class StudyFilters:
    """Matching keys of a study-level query. ``patient_name`` and ``patient_id`` may hold the
    wildcards ``*`` and ``?``; ``study_date`` is a date or a range (``a-b``, ``a-``, ``-b``);
    ``modalities`` any of several values. A value of ``*`` alone is no filter."""

    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.patient_id or self.patient_name or self.study_date or self.accession
                    or self.modalities)

    def keys(self) -> dict[str, str]:
        """The non-empty keys, by DICOM keyword (for the audit trail)."""
        values = {"PatientID": self.patient_id, "PatientName": self.patient_name,
                  "StudyDate": self.study_date, "AccessionNumber": self.accession,
                  "ModalitiesInStudy": "\\".join(self.modalities)}
        return {k: v for k, v in values.items() if v}

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> StudyFilters:
        """Filters from HTTP query parameters named by DICOM keyword; raises InvalidInput."""

        def text(keyword: str, limit: int) -> str:
            value = params.get(keyword, "").strip()
            if not value.strip("*"):
                return ""  # "*" alone matches everything: no filter
            if len(value) > limit:
                raise InvalidInput(f"{keyword} is longer than {limit} characters")
            if "\\" in value or any(ord(c) < 32 for c in value):
                raise InvalidInput(f"{keyword} must be one value without control characters")
            return value

        date = params.get("StudyDate", "").strip().replace(".", "")
        if date and (date == "-" or not _DATE_RANGE_RE.match(date)):
            raise InvalidInput("StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
        modalities = tuple(m for m in re.split(r"[\\,\s]+", params.get(
            "ModalitiesInStudy", "").strip().upper()) if m)
        if any(not _MODALITY_RE.match(m) for m in modalities):
            raise InvalidInput("ModalitiesInStudy must be modality codes such as CT,MR")
        return cls(patient_id=text("PatientID", 64), patient_name=text("PatientName", 64 * 3),
                   study_date=date, accession=text("AccessionNumber", 16),
                   modalities=modalities)


@dataclass(frozen=True)
class RemoteStudy:
    """One study-level C-FIND answer of a PACS."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    description: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    series: int | None = None
    instances: int | None = None
    in_archive: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "patient_id": self.patient_id,
                "patient_name": self.patient_name,
                "patient_birth_date": self.patient_birth_date, "study_date": self.study_date,
                "description": self.description, "accession": self.accession,
                "modalities": list(self.modalities), "series": self.series,
                "instances": self.instances, "in_archive": self.in_archive}


@dataclass(frozen=True)
class RetrieveResult:
    """What the PACS reported for a C-MOVE of one study to our AE."""

    study_uid: str
    completed: int
    failed: int
    warning: int
    status: int
    in_archive: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "completed": self.completed,
                "failed": self.failed, "warning": self.warning, "in_archive": self.in_archive}


def check_study_uid(study_uid: str) -> str:
    if len(study_uid) > 64 or not _UID_RE.match(study_uid):
        raise InvalidInput("not a Study Instance UID")
    return study_uid


# -- the network side -----------------------------------------------------------------------


def _scu(settings: Settings, abstract_syntax: str, answer_timeout: float) -> AE:
    ae = AE(ae_title=settings.dicom_ae_title)
    timeout = settings.dicom_remote_timeout
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = answer_timeout
    ae.network_timeout = answer_timeout
    ae.maximum_pdu_size = settings.dicom_max_pdu
    ae.add_requested_context(abstract_syntax, LITTLE_ENDIAN)
    return ae


def _associate(settings: Settings, node: DicomNode, abstract_syntax: str,
               answer_timeout: float) -> Association:
    if node.host is None or node.port is None:
        raise RemotePacsError(f"PACS {node.ae_title} has no host/port configured")
    ae = _scu(settings, abstract_syntax, answer_timeout)
    where = f"PACS {node.ae_title} at {node.host}:{node.port}"
    connected = threading.Event()  # pynetdicom reports a refused connection as an abort
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title,
                             evt_handlers=[(evt.EVT_CONN_OPEN, lambda _e: connected.set())])
    except OSError as exc:  # e.g. an unresolvable host name
        raise RemotePacsError(f"{where} cannot be reached: {exc}") from exc
    if assoc.is_established:
        keep_responses_for_the_sender(assoc)
        return assoc
    if not connected.is_set():
        raise RemotePacsError(f"{where} cannot be reached (connection refused or timed out)")
    if assoc.is_rejected:
        raise RemotePacsError(
            f"{where} refused the association (is {settings.dicom_ae_title} configured "
            "there as a known peer?)")
    raise RemotePacsError(f"{where} aborted the association or did not answer it")


def _status_of(status: Dataset) -> int | None:
    return int(status.Status) if "Status" in status else None


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except (ValueError, LookupError, UnicodeError) as exc:  # a badly encoded answer
        log.warning("remote C-FIND answer: unreadable %s: %s", keyword, exc)
        return ""
    return "" if value is None else str(value).strip()  # a PN decoded in its character set


def _count(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _study_of(ds: Dataset) -> RemoteStudy:
    try:
        raw_modalities = ds.get("ModalitiesInStudy")
    except (ValueError, LookupError, UnicodeError):
        raw_modalities = None
    if raw_modalities is None or raw_modalities == "":
        modalities: tuple[str, ...] = ()
    elif isinstance(raw_modalities, str):
        modalities = (raw_modalities.strip(),)
    else:
        modalities = tuple(str(m).strip() for m in raw_modalities if str(m).strip())
    return RemoteStudy(
        study_uid=_text(ds, "StudyInstanceUID"), patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"), study_date=_text(ds, "StudyDate"),
        description=_text(ds, "StudyDescription"), accession=_text(ds, "AccessionNumber"),
        modalities=modalities, series=_count(ds, "NumberOfStudyRelatedSeries"),
        instances=_count(ds, "NumberOfStudyRelatedInstances"))


def study_identifier(filters: StudyFilters) -> Dataset:
    """The C-FIND identifier: the filters as matching keys, every other key to return empty."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names in any script, Cyrillic included
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(ds, keyword, "")
    for keyword, value in filters.keys().items():
        setattr(ds, keyword, list(filters.modalities) if keyword == "ModalitiesInStudy"
                else value)
    return ds


def find_remote_studies(settings: Settings, node: DicomNode, filters: StudyFilters,
                        limit: int = MAX_RESULTS) -> list[RemoteStudy]:
    """Study-level C-FIND (Study Root) on ``node``; at most ``limit`` answers, newest first.

    Raises :class:`RemotePacsError` when the PACS is unreachable, refuses or fails the query.
    Blocking: call it in a worker thread from async code.
    """
    assoc = _associate(settings, node, STUDY_ROOT_FIND, settings.dicom_remote_timeout)
    found: list[RemoteStudy] = []
    final: int | None = None
    comment = ""
    try:
        for status, identifier in assoc.send_c_find(study_identifier(filters),
                                                    STUDY_ROOT_FIND):
            code = _status_of(status)
            if code in (0xFF00, 0xFF01):
                if identifier is not None:
                    study = _study_of(identifier)
                    if study.study_uid:
                        found.append(study)
                if len(found) >= limit:
                    log.info("C-FIND on %s: stopped after %d answers", node.ae_title, limit)
                    assoc.abort()
                    final = 0x0000
                    break
                continue
            final = code
            comment = str(status.get("ErrorComment", ""))
    finally:
        if assoc.is_established:
            assoc.release()
    if final is None:
        raise RemotePacsError(f"PACS {node.ae_title} did not answer the query in time "
                              "(or closed the association)")
    if final not in (0x0000, 0xFE00):
        raise RemotePacsError(f"PACS {node.ae_title} failed the query (status 0x{final:04X}"
                              f"{': ' + comment if comment else ''})")
    found.sort(key=lambda s: s.study_date, reverse=True)
    return found


_MOVE_FAILURES = {
    0xA801: "does not know {ae} as a move destination (add it to the PACS's DICOM peers "
            "with its host and port)",
    0xA701: "is out of resources (cannot compute the number of matches)",
    0xA702: "is out of resources (cannot perform the sub-operations)",
    0xA900: "says the identifier does not match the SOP class",
    0xC000: "cannot process the request (does it still hold the study?)",
}


Progress = Callable[[int, int, int, int], None]  # remaining, completed, failed, warning


def retrieve_remote_study(settings: Settings, node: DicomNode, study_uid: str,
                          progress: Progress | None = None) -> RetrieveResult:
    """C-MOVE of one study from ``node`` to our own AE title; returns when the PACS reports the
    move finished (the images are then ingested), or raises :class:`RemotePacsError`.
    ``progress`` gets the counts of every pending response (PACS that send them).

    The whole move is aborted after ``dicom_remote_retrieve_timeout`` seconds. Blocking: call
    it in a worker thread from async code.
    """
    check_study_uid(study_uid)
    # some PACS send no pending responses while they move: only the whole move is timed
    assoc = _associate(settings, node, STUDY_ROOT_MOVE, settings.dicom_remote_retrieve_timeout)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    counts = {"completed": 0, "failed": 0, "warning": 0}
    final: int | None = None
    comment = ""
    timer = threading.Timer(settings.dicom_remote_retrieve_timeout, assoc.abort)
    timer.daemon = True
    timer.start()
    try:
        for status, _identifier in assoc.send_c_move(identifier, settings.dicom_ae_title,
                                                     STUDY_ROOT_MOVE):
            code = _status_of(status)
            if code is None:
                break  # no answer in time, or the association went away
            for key, keyword in (("completed", "NumberOfCompletedSuboperations"),
                                 ("failed", "NumberOfFailedSuboperations"),
                                 ("warning", "NumberOfWarningSuboperations")):
                if keyword in status and status[keyword].value is not None:
                    counts[key] = int(status[keyword].value)
            if code in (0xFF00, 0xFF01):
                remaining = status.get("NumberOfRemainingSuboperations")
                if progress is not None and remaining is not None:
                    progress(int(remaining), counts["completed"], counts["failed"],
                             counts["warning"])
                continue
            final = code
            comment = str(status.get("ErrorComment", ""))
    finally:
        timer.cancel()
        if assoc.is_established:
            assoc.release()
    where = f"PACS {node.ae_title}"
    if final is None:
        raise RemotePacsError(f"{where} did not finish sending the study in time "
                              "(or closed the association)")
    if final in (0x0000, 0xB000, 0xFE00):  # success, some sub-operations failed, cancelled
        return RetrieveResult(study_uid, counts["completed"], counts["failed"],
                              counts["warning"], final)
    reason = _MOVE_FAILURES.get(final, "failed the retrieve").format(
        ae=settings.dicom_ae_title)
    raise RemotePacsError(f"{where} {reason} (status 0x{final:04X}"
                          f"{': ' + comment if comment else ''})")


# -- the archive side -----------------------------------------------------------------------


def indexed_study_uids(engine: Engine, study_uids: Collection[str]) -> set[str]:
    """Those of ``study_uids`` that the archive's index holds."""
    wanted = sorted(set(study_uids))
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            found.update(conn.execute(select(studies.c.study_uid).where(
                studies.c.study_uid.in_(chunk))).scalars())
    return found


def mark_in_archive(engine: Engine, found: Iterable[RemoteStudy]) -> list[RemoteStudy]:
    """The studies with ``in_archive`` set where the index already holds them."""
    listed = list(found)
    indexed = indexed_study_uids(engine, [s.study_uid for s in listed])
    return [replace(s, in_archive=s.study_uid in indexed) for s in listed]
