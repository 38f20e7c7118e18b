"""A hospital PACS through DICOMweb: study search by QIDO-RS and retrieve by WADO-RS into the
archive, through the one ingest function (owned by the PACS's institution, as a C-MOVE from its
DIMSE side would be).

Plain blocking functions over httpx (the web routes and the retrieve jobs call them in worker
threads). The retrieve streams the multipart answer and ingests each part as it completes: a
300-slice CT is never held in memory, and progress is reported per instance. Files arrive as
the PACS stores them (``transfer-syntax=*``: no transcoding on the way), so they are
byte-identical to the PACS's copy. Every network or protocol problem becomes
:class:`~consilium.archive.remote.RemotePacsError` (502) with a message a clinician can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from consilium.archive import multipart as mp
from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.archive.remote import (
    MAX_RESULTS,
    RemotePacsError,
    RemoteStudy,
    StudyFilters,
    check_study_uid,
)
from consilium.audit import Actor
from consilium.settings import DicomWebPacs

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
PART_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MAX_PART_BYTES = 2 * 1024**3  # one instance bigger than this is refused, not buffered
READ_CHUNK = 1 << 20

_TAGS = {
    "StudyInstanceUID": "0020000D", "PatientID": "00100020", "PatientName": "00100010",
    "PatientBirthDate": "00100030", "StudyDate": "00080020", "StudyDescription": "00081030",
    "AccessionNumber": "00080050", "ModalitiesInStudy": "00080061",
    "NumberOfStudyRelatedSeries": "00201206", "NumberOfStudyRelatedInstances": "00201208",
}


def _client(peer: DicomWebPacs, timeout: float | None = None) -> httpx.Client:
    headers = {}
    try:
        token = peer.bearer_token()
    except OSError as exc:
        raise RemotePacsError(f"PACS {peer.id}: its bearer token file cannot be read "
                              f"({exc.strerror or exc})") from exc
    if token:
        headers["Authorization"] = f"Bearer {token}"
    limit = peer.timeout if timeout is None else timeout
    return httpx.Client(base_url=peer.url, headers=headers, follow_redirects=False,
                        timeout=httpx.Timeout(limit, connect=min(limit, 10.0)))


def _first(element: dict[str, Any] | None) -> Any:
    if not element:
        return None
    values = element.get("Value") or []
    return values[0] if values else None


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # PN: {"Alphabetic": ..., "Ideographic": ...}
        return "=".join(str(value[k]) for k in ("Alphabetic", "Ideographic", "Phonetic")
                        if k in value).rstrip("=")
    return str(value).strip()


def study_of_json(item: dict[str, Any]) -> RemoteStudy:
    """One QIDO-RS study answer (DICOM JSON) as the federated search lists it."""

    def text(keyword: str) -> str:
        return _text_of(_first(item.get(_TAGS[keyword])))

    def count(keyword: str) -> int | None:
        value = _first(item.get(_TAGS[keyword]))
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    modalities = tuple(str(m) for m in (item.get(_TAGS["ModalitiesInStudy"]) or {}).get(
        "Value", []) if m)
    return RemoteStudy(
        study_uid=text("StudyInstanceUID"), patient_id=text("PatientID"),
        patient_name=text("PatientName"), patient_birth_date=text("PatientBirthDate"),
        study_date=text("StudyDate"), description=text("StudyDescription"),
        accession=text("AccessionNumber"), modalities=modalities,
        series=count("NumberOfStudyRelatedSeries"),
        instances=count("NumberOfStudyRelatedInstances"))


def qido_query(params: dict[str, str]) -> str:
    """The query string with ``*``, ``?``, ``^`` and ``,`` left as they are: Orthanc 1.10's
    DICOMweb plugin (1.7) compares the raw text of the URL, so ``FED%2A`` matches nothing
    where ``FED*`` matches (seen here; it also cannot match a percent-encoded Cyrillic
    name, which is a limit of that peer)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='*?^,-._~')}"
                    for k, v in params.items())


def qido_params(filters: StudyFilters, limit: int) -> dict[str, str]:
    params = dict(filters.keys())
    if filters.modalities:
        params["ModalitiesInStudy"] = ",".join(filters.modalities)
    params["limit"] = str(limit)
    params["includefield"] = ",".join(
        ("PatientBirthDate", "StudyDescription", "ModalitiesInStudy",
         "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"))
    return params


def find_web_studies(peer: DicomWebPacs, filters: StudyFilters, timeout: float | None = None,
                     limit: int = MAX_RESULTS) -> list[RemoteStudy]:
    """QIDO-RS ``/studies`` on ``peer``; newest first. Raises :class:`RemotePacsError`."""
    try:
        with _client(peer, timeout) as client:
            response = client.get(httpx.URL(
                f"{peer.url}/studies", query=qido_query(qido_params(filters, limit)).encode()),
                headers={"Accept": DICOM_JSON})
    except httpx.TimeoutException as exc:
        raise RemotePacsError(f"PACS {peer.id} did not answer the search in time") from exc
    except httpx.HTTPError as exc:
        raise RemotePacsError(f"PACS {peer.id} at {peer.url} cannot be reached: {exc}") from exc
    if response.status_code == 204:
        return []
    if response.status_code in (401, 403):
        raise RemotePacsError(f"PACS {peer.id} refused Consilium's credentials "
                              f"(HTTP {response.status_code})")
    if response.status_code != 200:
        raise RemotePacsError(f"PACS {peer.id} failed the search (HTTP "
                              f"{response.status_code})")
    try:
        items = response.json()
    except ValueError as exc:
        raise RemotePacsError(f"PACS {peer.id} answered the search with something other "
                              "than DICOM JSON") from exc
    if not isinstance(items, list):
        raise RemotePacsError(f"PACS {peer.id} answered the search with an unexpected shape")
    found = [study_of_json(i) for i in items[:limit] if isinstance(i, dict)]
    found = [s for s in found if s.study_uid]
    found.sort(key=lambda s: s.study_date, reverse=True)
    return found


# -- retrieve ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebRetrieveResult:
    """What a WADO-RS retrieve brought: instances ingested (or already held), refused, bytes."""

    study_uid: str
    completed: int
    failed: int
    received_bytes: int


def _part(part: bytes) -> tuple[dict[str, str], bytes]:
    head_end = part.find(b"\r\n\r\n")
    if head_end < 0:
        raise RemotePacsError("a part of the PACS's answer has no headers")
    headers = {}
    for line in part[:head_end].split(b"\r\n"):
        if b":" in line:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return headers, part[head_end + 4:]


def iter_parts(chunks: Iterator[bytes], boundary: str) -> Iterator[tuple[dict[str, str],
                                                                         bytes]]:
    """The parts of a multipart body as it streams in: each part is yielded once its closing
    delimiter has arrived; at most one part (plus a chunk) is held."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    buffer = bytearray(b"\r\n")  # the body's first delimiter has no CRLF before it
    started = False
    scan_from = 0
    for chunk in chunks:
        buffer += chunk
        while True:
            at = buffer.find(delimiter, scan_from)
            if at < 0:
                scan_from = max(0, len(buffer) - len(delimiter))
                if len(buffer) > MAX_PART_BYTES:
                    raise RemotePacsError("a part of the PACS's answer is over 2 GiB")
                break
            rest = at + len(delimiter)
            if len(buffer) < rest + 2:
                scan_from = at  # what follows the delimiter is still to come
                break
            closing = buffer[rest:rest + 2] == b"--"
            line_end = -1 if closing else buffer.find(b"\r\n", rest)
            if not closing and line_end < 0:
                scan_from = at
                break
            if started:
                yield _part(bytes(buffer[:at]))
            if closing:
                return
            started = True
            del buffer[:line_end + 2]
            scan_from = 0
    if started:
        raise RemotePacsError("the PACS's answer ended in the middle of a part")


def retrieve_web_study(peer: DicomWebPacs, study_uid: str, store: ArchiveStore,
                       actor: Actor | None = None,
                       progress: Callable[[int, int, int], None] | None = None,
                       timeout: float | None = None) -> WebRetrieveResult:
    """WADO-RS retrieve of a study from ``peer`` into the archive, each instance ingested as it
    arrives, owned by the PACS's institution. ``progress(completed, failed, bytes)`` is called
    after each instance. Raises :class:`RemotePacsError`."""
    check_study_uid(study_uid)
    source = IngestSource(peer.institution, channel="wado-rs", actor=actor)
    completed = failed = received = 0
    try:
        with _client(peer, timeout) as client, client.stream(
                "GET", f"/studies/{study_uid}", headers={"Accept": PART_ACCEPT}) as response:
            if response.status_code == 404:
                raise RemotePacsError(f"PACS {peer.id} does not hold study {study_uid}")
            if response.status_code != 200:
                raise RemotePacsError(f"PACS {peer.id} failed the retrieve (HTTP "
                                      f"{response.status_code})")
            try:
                media = mp.parse_media_type(response.headers.get("content-type", ""))
            except mp.MultipartError as exc:
                raise RemotePacsError(f"PACS {peer.id} answered with a malformed "
                                      f"content type: {exc}") from exc
            boundary = media.param("boundary")
            if media.type != "multipart/related" or not boundary:
                raise RemotePacsError(f"PACS {peer.id} answered the retrieve with "
                                      f"{media.type or 'no content type'}, not multipart")

            def chunks() -> Iterator[bytes]:
                nonlocal received
                for chunk in response.iter_bytes(READ_CHUNK):
                    received += len(chunk)
                    yield chunk

            for headers, body in iter_parts(chunks(), boundary):
                kind = headers.get("content-type", "application/dicom").split(";")[0].strip()
                if kind.lower() != "application/dicom":
                    failed += 1
                    log.warning("WADO-RS from %s: a part of type %s skipped", peer.id, kind)
                else:
                    result = ingest_part10(store, body, source)
                    if result.ok:
                        completed += 1
                    else:
                        failed += 1
                        log.warning("WADO-RS from %s: %s refused: %s", peer.id,
                                    result.sop_instance_uid or "?", result.reason)
                if progress is not None:
                    progress(completed, failed, received)
    except httpx.TimeoutException as exc:
        raise RemotePacsError(f"PACS {peer.id} stopped sending the study in time") from exc
    except httpx.HTTPError as exc:
        raise RemotePacsError(f"PACS {peer.id} at {peer.url} cannot be reached: {exc}") from exc
    return WebRetrieveResult(study_uid, completed, failed, received)
