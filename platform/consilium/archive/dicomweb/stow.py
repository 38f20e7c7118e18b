"""STOW-RS: store instances through the one ingest function (PS3.18 10.5)."""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import anyio
from pydicom import dcmread
from starlette.requests import Request
from starlette.responses import Response

from consilium.archive import dicomjson as dj
from consilium.archive import multipart as mp
from consilium.archive import query as q
from consilium.archive.access import Reader
from consilium.archive.dicomweb.base import (
    DicomWebBase,
    dicom_json,
    require_json,
)
from consilium.archive.ingest import IngestResult, IngestSource, Refusal, ingest_part10
from consilium.audit import AuditAction, AuditOutcome
from consilium.errors import InvalidInput, UnsupportedMediaType
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
}
STUDY_MISMATCH = 0xA900  # the instance is not of the study named in the request target
UNSUPPORTED_PART = 0xC000  # a part that is not application/dicom


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
        body = await request.body()
        try:
            parts = mp.parse_multipart(body, content_type.param("boundary"))
        except mp.MultipartError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from exc
        if not parts:
            raise InvalidInput("the multipart body has no parts")
        source = IngestSource(reader.principal.institution_id or UNASSIGNED_INSTITUTION,
                              channel="stow")
        outcomes = await anyio.to_thread.run_sync(self._store_parts, parts, study, source)
        response = self._store_response(request, outcomes, study)
        stored = sorted({r.study_uid for r, *_ in outcomes if r is not None and r.ok})
        self._audit_store(reader, stored, outcomes)
        return response

    def _audit_store(self, reader: Reader, stored: list[str],
                     outcomes: list[tuple[IngestResult | None, int, str, str]]) -> None:
        failed = sum(1 for r, *_ in outcomes if r is None or not r.ok)
        for study_uid in stored:
            self.runtime.audit.submit(reader.actor, AuditAction.STORE, study_uid=study_uid,
                                      detail={"what": "STOW-RS", "instances": sum(
                                          1 for r, *_ in outcomes
                                          if r is not None and r.ok and r.study_uid == study_uid)})
        if failed:
            self.runtime.audit.submit(reader.actor, AuditAction.STORE, AuditOutcome.FAILURE,
                                      detail={"what": "STOW-RS", "refused": failed})

    def _store_parts(self, parts: list[mp.Part], study: str | None, source: IngestSource
                     ) -> list[tuple[IngestResult | None, int, str, str]]:
        """(result, failure reason, sop class, sop instance) for every part."""
        out: list[tuple[IngestResult | None, int, str, str]] = []
        for part in parts:
            ptype = part.headers.get("content-type", "application/dicom")
            if mp.parse_media_type(ptype).type not in ("application/dicom", ""):
                out.append((None, UNSUPPORTED_PART, "", ""))
                continue
            data = bytes(part.content)
            if study is not None:
                identity = _identity(data)
                if identity is not None and identity[2] != study:
                    log.warning("STOW: %s is of study %s, not %s", identity[1], identity[2], study)
                    out.append((None, STUDY_MISMATCH, identity[0], identity[1]))
                    continue
            result = ingest_part10(self.store, data, source)
            reason = FAILURE_REASON[result.refusal] if result.refusal else 0
            if result.refusal:
                log.warning("STOW refused %s: %s", result.sop_instance_uid or "?", result.reason)
            out.append((result, reason, result.sop_class_uid, result.sop_instance_uid))
        return out

    def _store_response(self, request: Request,
                        outcomes: list[tuple[IngestResult | None, int, str, str]],
                        study: str | None) -> Response:
        base = self.base_url(request)
        referenced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        studies: set[str] = set()
        where = q.instance_locations(
            self.engine, [o[3] for o in outcomes if o[0] is not None and o[0].ok])
        for result, reason, sop_class, sop_uid in outcomes:
            refs = {
                "00081150": dj.index_value_json("UI", sop_class),
                "00081155": dj.index_value_json("UI", sop_uid),
            }
            if result is not None and result.ok:
                studies.add(result.study_uid)
                study_uid, series_uid = where.get(sop_uid, (result.study_uid, ""))
                url = f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
                referenced.append({**refs, "00081190": {"vr": "UR", "Value": [url]}})
            else:
                failed.append({**refs, "00081197": {"vr": "US", "Value": [reason]}})
        payload: dict[str, Any] = {}
        target = study or (next(iter(studies)) if len(studies) == 1 else None)
        if target is not None:
            payload["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
        if failed:
            payload["00081198"] = {"vr": "SQ", "Value": failed}
        if referenced:
            payload["00081199"] = {"vr": "SQ", "Value": referenced}
        status = 200 if not failed else 202 if referenced else 409
        return dicom_json(dict(sorted(payload.items())), status=status)



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

