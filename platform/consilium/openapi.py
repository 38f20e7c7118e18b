"""The OpenAPI description of Consilium's HTTP API, served at ``/openapi.json``.

Written by hand next to the routes it describes: the handlers are thin adapters whose contracts
are small, and a test checks that every documented path is routed and every routed ``/api`` path
is documented.
"""

from __future__ import annotations

from typing import Any

from consilium import __version__

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _answers(ok: str, *codes: int) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": ok}}
    texts = {400: "invalid input", 401: "not authenticated", 403: "not allowed",
             404: "unknown or not visible to the caller", 406: "not acceptable",
             409: "not allowed in the current state, or a stale version",
             413: "over the size limit",
             415: "unsupported media type", 422: "the series cannot be rendered",
             502: "the remote PACS cannot be reached, refused the association or failed",
             503: "a render worker is restarting or busy"}
    for code in codes:
        answers[str(code)] = {"description": texts[code], "content": _JSON_ERROR}
    return answers


def _op(summary: str, ok: str, *codes: int, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _answers(ok, *codes)}
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


def _attachment_upload(case: dict[str, Any]) -> dict[str, Any]:
    op = _op("Attach a file to the case: the body is the file, Content-Type its media type "
             "(application/pdf, image/png, image/jpeg, application/dicom), checked against "
             "its first bytes; limit consult.attachment_max_mb",
             "", 400, 401, 403, 404, 409, 413, 415,
             params=[case, {"name": "filename", "in": "query", "required": True,
                            "schema": {"type": "string"}}])
    del op["responses"]["200"]
    op["responses"]["201"] = {"description": "the attachment: {id, case_id, filename, "
                              "media_type, size, sha256, uploaded_by, uploaded_by_name, at}"}
    op["requestBody"] = {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}}
        for t in ("application/pdf", "image/png", "image/jpeg", "application/dicom")}}
    return op


CASE_ACTIONS = ["submit", "resubmit", "accept", "decline", "return", "reassign", "conclude",
                "amend", "close", "cancel"]


def _consilia(case: dict[str, Any]) -> dict[str, Any]:
    """Live consilium sessions (the Socket.IO protocol: docs/live-consilium.md)."""
    session = _path_param("session_id")
    one = "the session: {id, case_id, title, status, scheduled_at, opened_at, ended_at, chair, " \
        "presenter, last_seq, members: [{subject, name, institution, role, invited, " \
        "expires_at}], url}"
    subjects = {"type": "array", "items": {"type": "string"},
                "description": "clinicians' subjects, from /api/directory(/colleagues)"}
    return {
        "/api/consilia": {"get": _op(
            "My consilium sessions (chair or invited), soonest first: {sessions: [...]}",
            "sessions", 401)},
        "/api/cases/{case_id}/consilia": {
            "get": _op("The consilium sessions of a case", "{sessions: [...]}", 401, 404,
                       params=[case]),
            "post": _op(
                "Schedule a consilium of the case (the caller chairs it); without scheduled_at "
                "it opens now. Each invitee is granted the case's studies for the session",
                one, 400, 401, 404, 409, params=[case], body={
                    "type": "object", "properties": {
                        "title": {"type": "string"}, "invitees": subjects,
                        "scheduled_at": {"type": "string", "format": "date-time"}}})},
        "/api/consilia/{session_id}": {"get": _op("A consilium session", one, 401, 404,
                                                  params=[session])},
        "/api/consilia/{session_id}/changes": {"get": _op(
            "The session's record: its changes in seq order after ?after=<seq> (at most "
            "?limit=1000): {session_id, changes: [{seq, at, actor, kind, payload}]}",
            "changes", 400, 401, 404, params=[session, _query("after", "seq"),
                                              _query("limit", "count")])},
        "/api/consilia/{session_id}/start": {"post": _op(
            "Open a scheduled session (the chair)", one, 401, 403, 404, 409,
            params=[session])},
        "/api/consilia/{session_id}/invite": {"post": _op(
            "Invite clinicians of any institution (the chair)", one, 400, 401, 403, 404, 409,
            params=[session], body={"type": "object", "required": ["subjects"],
                                    "properties": {"subjects": subjects}})},
        "/api/consilia/{session_id}/uninvite": {"post": _op(
            "Take an invitation back; its grants end at once (the chair)", one, 400, 401, 403,
            404, 409, params=[session], body={"type": "object", "required": ["subject"],
                                              "properties": {"subject": {"type": "string"}}})},
        "/api/consilia/{session_id}/end": {"post": _op(
            "End the session (the chair): the case timeline gets who joined, presented and "
            "said what", one, 401, 403, 404, 409, params=[session])},
    }


def openapi_document() -> dict[str, Any]:
    case = _path_param("case_id", "integer")
    series = _path_param("series_uid")
    study = _path_param("study")
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("Status and counts", "ok")},
        "/api/me": {"get": _op("The caller: name, institution, roles, CSRF token", "ok", 401)},
        "/api/directory": {"get": _op(
            "Consult targets: the other institutions, their specialties and named specialists "
            "(clinicians)", "institutions", 401, 403)},
        "/api/directory/colleagues": {"get": _op(
            "The consultants of the caller's own institution, the caller excluded (whom a case "
            "can be reassigned to): {colleagues: [{subject, name, specialty}]}", "colleagues",
            401, 403)},
        "/api/studies": {"get": _op("Studies the caller may see (own institution + grants)",
                                    "a list of studies", 401)},
        "/api/audit": {"get": _op(
            "Search the audit trail (heads, admins); format=csv exports", "events", 400, 401,
            403, params=[_query(n, n) for n in ("patient_id", "study_uid", "actor", "action",
                                                "since", "until", "limit", "offset", "format")])},
        "/api/history/{what}": {"get": _op(
            "Heads: cases sent/received (what=cases) or turnaround median/p90 by institution, "
            "specialty and month (what=turnaround; group=month or another subset of "
            "institution,specialty,month); format=csv exports", "rows", 400, 401, 403,
            params=[_path_param("what")] + [_query(n, n) for n in (
                "status", "priority", "institution", "specialty", "person", "since", "until",
                "group", "format")])},
        "/api/cases": {
            "get": _op("My inbox (target side) and my requests", "cases", 401),
            "post": _op("Open a draft consult request", "the case", 400, 401, 403, body={
                "type": "object",
                "required": ["question", "study_uids", "target_institution"],
                "properties": {
                    "question": {"type": "string"}, "clinical_info": {"type": "string"},
                    "study_uids": {"type": "array", "items": {"type": "string"}},
                    "target_institution": {"type": "string"},
                    "target_specialty": {"type": "string"}, "target_subject": {"type": "string"},
                    "priority": {"enum": ["routine", "urgent", "emergency"]},
                    "key_images": {"type": "object", "description": "study UID -> SOP "
                                   "Instance UIDs of its key images",
                                   "additionalProperties": {"type": "array",
                                                            "items": {"type": "string"}}}}}),
        },
        "/api/cases/{case_id}": {
            "get": _op("A case with studies, messages and conclusions", "the case", 401, 404,
                       params=[case]),
            "patch": _op(
                "Edit a draft (text, priority, target, studies, key images) or a returned "
                "case's text; 'version' is required (409 when someone else changed it)",
                "the case", 400, 401, 403, 404, 409, params=[case], body={
                    "type": "object", "required": ["version"], "properties": {
                        "version": {"type": "integer"}, "question": {"type": "string"},
                        "clinical_info": {"type": "string"},
                        "priority": {"enum": ["routine", "urgent", "emergency"]},
                        "target_institution": {"type": "string"},
                        "target_specialty": {"type": "string"},
                        "target_subject": {"type": "string"},
                        "study_uids": {"type": "array", "items": {"type": "string"}},
                        "key_images": {"type": "object"}}})},
        "/api/cases/{case_id}/history": {"get": _op(
            "The case's timeline: its events merged with views and retrievals of its studies "
            "(kind viewed/retrieved, from the audit trail)", "events", 401, 404,
                                                    params=[case])},
        "/api/cases/{case_id}/conclusion-draft": {
            "get": _op("The conclusion being written (only who may sign it sees it)",
                       "{draft: null | draft}", 401, 403, 404, 409, params=[case]),
            "put": _op(
                "Save the conclusion being written; 'version' is the draft version it started "
                "from (null for the first save), 409 when it changed meanwhile", "{draft}",
                400, 401, 403, 404, 409, params=[case], body={
                    "type": "object", "properties": {
                        "version": {"type": ["integer", "null"]},
                        "findings": {"type": "string"}, "impression": {"type": "string"},
                        "recommendations": {"type": "string"}}})},
        "/api/cases/{case_id}/messages": {"post": _op(
            "Post a message to the case's thread", "the message", 400, 401, 404, 409,
            params=[case], body={"type": "object", "required": ["text"],
                                 "properties": {"text": {"type": "string"}}})},
        "/api/cases/{case_id}/attachments": {"post": _attachment_upload(case)},
        "/api/cases/{case_id}/attachments/{attachment_id}": {"get": _op(
            "An attachment's bytes, with its media type (Content-Disposition: attachment)",
            "the file", 401, 404,
            params=[case, _path_param("attachment_id", "integer")])},
        "/api/cases/{case_id}/conclusions/{version}.pdf": {"get": _op(
            "A signed conclusion version as PDF (the same bytes as the Encapsulated PDF "
            "written into the archive beside each study)", "application/pdf", 401, 404,
            params=[case, _path_param("version", "integer")])},
        "/api/render/series/{series_uid}/info": {"get": _op(
            "Volume geometry, build report, standard planes", "info", 401, 404, 422, 503,
            params=[series])},
        "/api/render/series/{series_uid}/mpr": {"get": _op(
            "An MPR/oblique/slab frame; plane geometry in headers", "an image", 400, 401, 404,
            422, 503, params=[series] + [_query(n, n) for n in (
                "orientation", "point", "normal", "x_axis", "slab", "mode", "window", "size",
                "quality", "format")])},
        "/api/render/series/{series_uid}/volume": {"get": _op(
            "A volume-rendered frame; camera in headers", "an image", 400, 401, 404, 422, 503,
            params=[series] + [_query(n, n) for n in (
                "preset", "azimuth", "elevation", "roll", "zoom", "pan", "size", "quality",
                "clip", "clipplane")])},
        "/api/render/series/{series_uid}/isosurface.stl": {"get": _op(
            "An isosurface as binary STL (patient coordinates)", "STL", 400, 401, 404, 422,
            503, params=[series, _query("level", "HU"), _query("step", "voxels")])},
        "/api/remote/pacs": {"get": _op(
            "The hospital PACS nodes the caller may query (own institution's, clinicians): "
            "[{ae_title, institution, institution_name, description}]", "PACS nodes", 401)},
        "/api/remote/pacs/{ae_title}/studies": {"get": _op(
            "Study-level C-FIND on a PACS of the caller's institution; at least one filter. "
            "Answers [{study_uid, patient_id, patient_name, patient_birth_date, study_date, "
            "description, accession, modalities, series, instances, in_archive}]",
            "studies", 400, 401, 403, 404, 502, params=[
                _path_param("ae_title"), _query("PatientID", "exact or wildcard (* ?)"),
                _query("PatientName", "wildcard (* ?), case-insensitive where the PACS is"),
                _query("StudyDate", "YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
                _query("AccessionNumber", "exact"),
                _query("ModalitiesInStudy", "modality codes, comma separated")])},
        "/api/remote/pacs/{ae_title}/studies/{study_uid}/retrieve": {"post": _op(
            "C-MOVE of a study from the PACS into the archive (owned by the PACS's "
            "institution); answers {study_uid, completed, failed, warning, in_archive} when the "
            "move is over", "the move's outcome", 400, 401, 403, 404, 502,
            params=[_path_param("ae_title"), _path_param("study_uid")])},
        "/dicom-web/studies": {
            "get": _op("QIDO-RS study search (PS3.18)", "DICOM JSON", 400, 401),
            "post": _op("STOW-RS (multipart/related; type=application/dicom)",
                        "stored (or 202 partly, 409 none)", 400, 401, 409, 415),
        },
        "/dicom-web/studies/{study}": {"get": _op(
            "WADO-RS retrieve a study (multipart/related)", "the instances", 401, 404, 406,
            params=[study])},
        "/dicom-web/studies/{study}/metadata": {"get": _op(
            "WADO-RS study metadata", "DICOM JSON", 401, 404, params=[study])},
    }
    paths.update(_consilia(case))
    for action in CASE_ACTIONS:
        paths[f"/api/cases/{{case_id}}/{action}"] = {"post": _op(
            f"Case transition: {action}", "the case (or the signed conclusion)", 400, 401, 403,
            404, 409, params=[case], body={"type": "object",
                                           "properties": {"version": {"type": "integer"}}})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Consilium", "version": __version__,
                 "description": "Regional teleconsultation platform. Authenticate with the "
                 "session cookie (browsers; writes need X-CSRF-Token) or a bearer token from "
                 "a configured OpenID provider. DICOMweb follows PS3.18 under /dicom-web."},
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": "consilium_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
