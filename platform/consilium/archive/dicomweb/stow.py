"""STOW-RS: store instances through the one ingest function (PS3.18 10.5).

The body is streamed to a temporary file under ``data_dir/tmp`` (unlinked at once, so nothing
is left behind by a crash) up to ``dicomweb.stow_max_mb`` (413 beyond it, as soon as the
declared length or the bytes received pass it); its parts are found in the file and read one
at a time while each is ingested: a large request is never held in memory.

Every part gets its own outcome: stored (or the identical instance again), or a failure with
its PS3.18 Failure Reason in the Failed SOP Sequence and its reason in a ``Warning`` header
(``299 consilium "<SOP Instance UID>: <reason>"``). A part whose processing raises is a
failure of that part (0x0110), never a 500 for the request; the instances stored before and
after it stay stored and are audited.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from dataclasses import dataclass
from typing import IO, Any

import anyio
from pydicom import dcmread
from starlette.requests import Request
from starlette.responses import Response

from consilium.archive import dicomjson as dj
from consilium.archive import multipart as mp
from consilium.archive.access import Reader
from consilium.archive.dicomweb.base import (
    DicomWebBase,
    dicom_json,
    require_json,
)
from consilium.archive.ingest import IngestResult, IngestSource, Refusal, ingest_part10
from consilium.archive.stored import instance_locations
from consilium.audit import AuditAction, AuditOutcome
from consilium.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from consilium.identity.policy import (
    UNASSIGNED_INSTITUTION,
)

log = logging.getLogger(__name__)

# PS3.18 Table I.2-2 Failure Reason values, by the ingest refusal they answer
FAILURE_REASON: dict[Refusal, int] = {
    Refusal.UNREADABLE: 0xC000,  # cannot understand
    Refusal.MISSING_UID: 0xA900,  # does not match its SOP Class (required UIDs)
    Refusal.MISMATCH: 0xA900,
    Refusal.CONFLICT: 0x0111,  # duplicate SOP Instance with other content
    Refusal.UNKNOWN_SOURCE: 0x0124,  # not authorized
    Refusal.OUT_OF_RESOURCES: 0xA700,
    Refusal.FOREIGN: 0xC213,  # another institution's or patient's study (as over DIMSE)
    Refusal.TOO_LARGE: 0xC214,  # declared pixels over the pixels.* limits (as over DIMSE)
}
STUDY_MISMATCH = 0xA900  # the instance is not of the study named in the request target
UNSUPPORTED_PART = 0xC000  # a part that is not application/dicom
PROCESSING_FAILURE = 0x0110  # this part's processing failed unexpectedly (logged)
MIB = 2**20
_SPOOL_CHUNK = 1 << 20
_WARNING_BYTES = 4000  # of per-instance reasons in the Warning header


@dataclass(frozen=True)
class PartOutcome:
    """One part of the request: ingested (``result``), or failed before ingest."""

    result: IngestResult | None
    failure_reason: int  # 0 for success
    sop_class: str
    sop_instance: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


class Stow(DicomWebBase):

    async def store_instances(self, request: Request) -> Response:
        reader = self.reader(request)
        try:
            content_type = mp.parse_media_type(request.headers.get("content-type", ""))
        except mp.MultipartError as exc:
            raise InvalidInput(str(exc)) from exc
        if content_type.type != "multipart/related":
            raise UnsupportedMediaType('STOW-RS takes multipart/related; type="application/dicom"')
        part_type = content_type.param("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise UnsupportedMediaType(f"parts of type {part_type} are not supported; send "
                                       "application/dicom")
        require_json(request)
        study = request.path_params.get("study")
        if study is not None:
            self.access.check_store_target(reader, study)
        spool = await self._spool(request)
        source = IngestSource(reader.principal.institution_id or UNASSIGNED_INSTITUTION,
                              channel="stow", actor=reader.actor)
        try:
            outcomes = await anyio.to_thread.run_sync(
                self._store_spooled, spool, content_type.param("boundary"), study, source)
        finally:
            spool.close()
        response = self._store_response(request, outcomes, study)
        stored = sorted({o.result.study_uid for o in outcomes if o.ok and o.result})
        self._audit_store(reader, stored, outcomes)
        return response

    async def _spool(self, request: Request) -> IO[bytes]:
        """The request body in an unlinked temporary file, or 413 past the limit."""
        limit = self.ctx.settings.dicomweb_stow_max_mb * MIB
        too_large = PayloadTooLarge(
            f"the request body is over the STOW-RS limit of "
            f"{self.ctx.settings.dicomweb_stow_max_mb} MiB (dicomweb.stow_max_mb); send "
            "the instances in several requests")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        folder = self.ctx.settings.data_dir / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        spool = tempfile.TemporaryFile(dir=folder, prefix="stow-")  # noqa: SIM115 (returned)
        try:
            size = 0
            pending: list[bytes] = []
            held = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                pending.append(chunk)
                held += len(chunk)
                if held >= _SPOOL_CHUNK:  # write in larger pieces, off the event loop
                    data = b"".join(pending)
                    pending, held = [], 0
                    await anyio.to_thread.run_sync(spool.write, data)
            if pending:
                await anyio.to_thread.run_sync(spool.write, b"".join(pending))
            spool.flush()
        except BaseException:
            spool.close()
            raise
        return spool

    def _store_spooled(self, spool: IO[bytes], boundary: str, study: str | None,
                       source: IngestSource) -> list[PartOutcome]:
        """Each part read from the spool file in turn and ingested: one part in memory."""
        try:
            parts = mp.parse_multipart_file(spool, boundary)
        except mp.MultipartError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from exc
        if not parts:
            raise InvalidInput("the multipart body has no parts")
        outcomes = []
        for part in parts:
            spool.seek(part.offset)
            outcomes.append(self._store_part(part.headers, spool.read(part.length), study,
                                             source))
        return outcomes

    def _store_part(self, headers: dict[str, str], data: bytes, study: str | None,
                    source: IngestSource) -> PartOutcome:
        try:
            ptype = headers.get("content-type", "application/dicom")
            if mp.parse_media_type(ptype).type not in ("application/dicom", ""):
                return PartOutcome(None, UNSUPPORTED_PART, "", "",
                                   f"a part of type {ptype} is not application/dicom")
            if study is not None:
                identity = _identity(data)
                if identity is not None and identity[2] != study:
                    log.warning("STOW: %s is of study %s, not %s", identity[1], identity[2],
                                study)
                    return PartOutcome(None, STUDY_MISMATCH, identity[0], identity[1],
                                       "not of the study in the request URL")
            result = ingest_part10(self.store, data, source)
        except Exception as exc:  # this part fails; the request and the other parts go on
            log.exception("STOW: a part failed")
            return PartOutcome(None, PROCESSING_FAILURE, "", "",
                               f"processing failure ({type(exc).__name__})")
        if result.refusal:
            log.warning("STOW refused %s: %s", result.sop_instance_uid or "?", result.reason)
            return PartOutcome(result, FAILURE_REASON[result.refusal], result.sop_class_uid,
                               result.sop_instance_uid, result.reason)
        return PartOutcome(result, 0, result.sop_class_uid, result.sop_instance_uid)

    def _audit_store(self, reader: Reader, stored: list[str],
                     outcomes: list[PartOutcome]) -> None:
        """Queued for the audit writer: the answer does not wait on an audit commit."""
        failed = sum(1 for o in outcomes if not o.ok)
        for study_uid in stored:
            self.ctx.audit.submit(reader.actor, AuditAction.STORE, study_uid=study_uid,
                                  detail={"what": "STOW-RS", "instances": sum(
                                      1 for o in outcomes
                                      if o.ok and o.result and o.result.study_uid
                                      == study_uid)})
        if failed:
            self.ctx.audit.submit(reader.actor, AuditAction.STORE, AuditOutcome.FAILURE,
                                  detail={"what": "STOW-RS", "refused": failed})

    def _store_response(self, request: Request, outcomes: list[PartOutcome],
                        study: str | None) -> Response:
        base = self.base_url(request)
        referenced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        warnings_: list[str] = []
        studies: set[str] = set()
        where = instance_locations(self.engine, [o.sop_instance for o in outcomes if o.ok])
        for outcome in outcomes:
            refs = {
                "00081150": dj.index_value_json("UI", outcome.sop_class),
                "00081155": dj.index_value_json("UI", outcome.sop_instance),
            }
            if outcome.ok and outcome.result is not None:
                studies.add(outcome.result.study_uid)
                study_uid, series_uid = where.get(outcome.sop_instance,
                                                  (outcome.result.study_uid, ""))
                url = (f"{base}/studies/{study_uid}/series/{series_uid}/instances/"
                       f"{outcome.sop_instance}")
                referenced.append({**refs, "00081190": {"vr": "UR", "Value": [url]}})
            else:
                failed.append({**refs, "00081197": {"vr": "US", "Value": [
                    outcome.failure_reason]}})
                warnings_.append(_warning(outcome))
        payload: dict[str, Any] = {}
        target = study or (next(iter(studies)) if len(studies) == 1 else None)
        if target is not None:
            payload["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
        if failed:
            payload["00081198"] = {"vr": "SQ", "Value": failed}
        if referenced:
            payload["00081199"] = {"vr": "SQ", "Value": referenced}
        status = 200 if not failed else 202 if referenced else 409
        headers = None
        if warnings_:
            text = ", ".join(warnings_)
            if len(text) > _WARNING_BYTES:
                text = text[:_WARNING_BYTES].rsplit(", ", 1)[0]
            headers = {"Warning": text}
        return dicom_json(dict(sorted(payload.items())), status=status, headers=headers)


def _warning(outcome: PartOutcome) -> str:
    """An RFC 7234 warning for one failed part (ASCII, no quotes or backslashes)."""
    what = f"{outcome.sop_instance or 'a part'}: {outcome.reason or 'refused'}"
    clean = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "?" for c in what)
    return f'299 consilium "{clean[:300]}"'


def _identity(data: bytes) -> tuple[str, str, str] | None:
    """(SOP class, SOP instance, study) of a PS3.10 file, or None if unreadable (ingest will
    then refuse it with its own reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True,
                         specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        return (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")),
                str(ds.get("StudyInstanceUID", "")))
    except Exception:
        return None
