"""The OpenAPI description of Consilium's HTTP API, served at ``/openapi.json``.

The paths, their summaries and statuses are written here next to the routes they describe; the
schemas of request and response bodies are generated from the very models the routes validate
bodies with and answer (``CaseCreate``, ``CasePublic``, ...): a field added to a model is
documented by that alone. A test checks that every documented path is routed, every routed
``/api`` path is documented, and each body refers to its model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from consilium import __version__
from consilium.archive.federation import FederatedAnswer, SourcePublic
from consilium.archive.federation_routes import CaseStudyRequest, RetrieveRequest
from consilium.archive.marks import KeyImage, Mark
from consilium.archive.marks_read import ArchivedMarks
from consilium.archive.media_routes import (
    FilmPrint,
    FilmPrinted,
    FilmPrinterPublic,
    MediaExport,
)
from consilium.archive.prefetch import CaseRemoteStudyPublic
from consilium.archive.remote_routes import PacsNode, RemoteStudyPublic, RetrieveOutcome
from consilium.archive.retrieval import RetrieveJobPublic
from consilium.archive.routes import Health, StudySummary
from consilium.archive.worklist_models import (
    PerformedStepPublic,
    ProcedureCreate,
    ProcedurePublic,
    ProcedureUpdate,
)
from consilium.consult.annotation_models import KeyImageCreate, KeyImageList, MarkList
from consilium.consult.annotation_routes import Deleted
from consilium.consult.models import (
    AttachmentPublic,
    CaseCreate,
    CaseDetail,
    CaseList,
    CasePublic,
    CaseUpdate,
    ConclusionPublic,
    DraftAnswer,
    DraftUpdate,
    MessageCreate,
    MessagePublic,
    TimelineEntryPublic,
)
from consilium.consult.routes import TRANSITION_BODIES
from consilium.history.routes import AuditEventPublic, CaseRow, TurnaroundRow
from consilium.identity.models import MePublic
from consilium.identity.roster import Colleagues, Directory
from consilium.identity.services import (
    ServiceTokenCreate,
    ServiceTokenIssued,
    ServiceTokenPublic,
)
from consilium.live.models import SessionPublic
from consilium.live.protocol_models import (
    ProtocolPublic,
    ReplayPublic,
    ReplayState,
    VersionTexts,
)
from consilium.live.protocol_routes import PenBody, SaveBody, SignBody, VersionBody
from consilium.live.routes import InviteBody, ScheduleBody, UninviteBody
from consilium.render.routes import PrepareAnswer, RoiStats, VolumeInfo
from consilium.status import SystemStatus
from consilium.web_static import UiConfig

REF = "#/components/schemas/{model}"
ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "why, for a person"},
    "reason": {"type": "string", "description": "a code, where the service names one"}}}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

CASE_ACTIONS = list(TRANSITION_BODIES)


@dataclass(frozen=True)
class Shape:
    """A model's schema, resolved once every model of the document is known."""

    model: type[BaseModel]
    mode: JsonSchemaMode = "serialization"
    many: bool = False


@dataclass(frozen=True)
class OneOf:
    """An answer that is one of several shapes (by a path parameter)."""

    shapes: tuple[Shape, ...]


def answer(model: type[BaseModel]) -> Shape:
    return Shape(model)


def answers(model: type[BaseModel]) -> Shape:
    return Shape(model, many=True)


def _answers(ok: str, shape: Shape | OneOf | None, *codes: int) -> dict[str, Any]:
    first: dict[str, Any] = {"description": ok}
    if shape is not None:
        first["content"] = {"application/json": {"schema": shape}}
    responses: dict[str, Any] = {"200": first}
    texts = {400: "invalid input (the message names the field)", 401: "not authenticated",
             403: "not allowed", 404: "unknown or not visible to the caller",
             406: "not acceptable", 409: "not allowed in the current state, or a stale version",
             413: "over the size limit",
             415: "unsupported media type", 422: "the series cannot be rendered",
             502: "the remote PACS cannot be reached, refused the association or failed",
             503: "a render worker is restarting or busy"}
    for code in codes:
        responses[str(code)] = {"description": texts[code], "content": _JSON_ERROR}
    return responses


def _op(summary: str, ok: str, *codes: int, answer: Shape | OneOf | None = None,
        body: type[BaseModel] | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _answers(ok, answer, *codes)}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": Shape(body, "validation")}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


def _prepare(series: dict[str, Any]) -> dict[str, Any]:
    op = _op("Build the series' volume, reslicer and coarse 3-D state in the render worker "
             "now, in the background (the viewer asks after a volume's first image); 202 "
             "queued/running/skipped; wait=1 answers 200 when ready", "ready (wait=1)",
             400, 401, 404, 422, 503, answer=answer(PrepareAnswer),
             params=[series, _query("wait", "1: answer when the volume is ready")])
    op["responses"]["202"] = {"description": "queued, running or skipped", "content": {
        "application/json": {"schema": answer(PrepareAnswer)}}}
    return op


def _attachment_upload(case: dict[str, Any]) -> dict[str, Any]:
    op = _op("Attach a file to the case: the body is the file, Content-Type its media type "
             "(application/pdf, image/png, image/jpeg, application/dicom), checked against "
             "its first bytes; limit consult.attachment_max_mb",
             "", 400, 401, 403, 404, 409, 413, 415,
             params=[case, {"name": "filename", "in": "query", "required": True,
                            "schema": {"type": "string"}}])
    del op["responses"]["200"]
    op["responses"]["201"] = {"description": "the attachment", "content": {
        "application/json": {"schema": answer(AttachmentPublic)}}}
    op["requestBody"] = {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}}
        for t in ("application/pdf", "image/png", "image/jpeg", "application/dicom")}}
    return op


class ConsiliumSessions(BaseModel):
    """The answer of the session lists (``live/routes.py``)."""

    sessions: list[SessionPublic]


class ConsiliumChange(BaseModel):
    seq: int
    at: str
    actor: str
    kind: str
    payload: dict[str, Any]


class ConsiliumChanges(BaseModel):
    """A session's record (``live/routes.py``; the kinds: docs/live-consilium.md)."""

    session_id: str
    changes: list[ConsiliumChange]


def _consilia(case: dict[str, Any]) -> dict[str, Any]:
    """Live consilium sessions (the Socket.IO protocol: docs/live-consilium.md)."""
    session = _path_param("session_id")
    one = answer(SessionPublic)
    chair = (401, 403, 404, 409)
    return {
        "/api/consilia": {"get": _op(
            "My consilium sessions (chair or invited), soonest first", "sessions", 401,
            answer=answer(ConsiliumSessions))},
        "/api/cases/{case_id}/consilia": {
            "get": _op("The consilium sessions of a case", "sessions", 401, 404, params=[case],
                       answer=answer(ConsiliumSessions)),
            "post": _op(
                "Schedule a consilium of the case (the caller chairs it); without scheduled_at "
                "it opens now. Each invitee is granted the case's studies for the session",
                "the session", 400, 401, 404, 409, params=[case], body=ScheduleBody,
                answer=one)},
        "/api/consilia/{session_id}": {"get": _op("A consilium session", "the session", 401,
                                                  404, params=[session], answer=one)},
        "/api/consilia/{session_id}/changes": {"get": _op(
            "The session's record: its changes in seq order after ?after=<seq> (at most "
            "?limit=1000)", "changes", 400, 401, 404,
            params=[session, _query("after", "seq"), _query("limit", "count")],
            answer=answer(ConsiliumChanges))},
        "/api/consilia/{session_id}/start": {"post": _op(
            "Open a scheduled session (the chair)", "the session", *chair, params=[session],
            answer=one)},
        "/api/consilia/{session_id}/invite": {"post": _op(
            "Invite clinicians of any institution (the chair)", "the session", 400, *chair,
            params=[session], body=InviteBody, answer=one)},
        "/api/consilia/{session_id}/uninvite": {"post": _op(
            "Take an invitation back; its grants end at once (the chair)", "the session", 400,
            *chair, params=[session], body=UninviteBody, answer=one)},
        "/api/consilia/{session_id}/end": {"post": _op(
            "End the session (the chair): the case timeline gets who joined, presented and "
            "said what", "the session", *chair, params=[session], answer=one)},
    }


def _protocol_paths() -> dict[str, Any]:
    """The consilium's protocol and replay (docs/live-consilium.md)."""
    session = _path_param("session_id")
    one = answer(ProtocolPublic)
    base = "/api/consilia/{session_id}"
    return {
        f"{base}/protocol": {
            "get": _op("The session's protocol: status, editor, newest text, versions, "
                       "signatures, PDF and archive", "the protocol", 401, 404,
                       params=[session], answer=one),
            "put": _op("Save the text as a new version, made on ?version (the editor)",
                       "the protocol", 400, 401, 403, 404, 409, params=[session],
                       body=SaveBody, answer=one)},
        f"{base}/protocol/versions": {"get": _op(
            "Every saved version with its text", "the versions", 401, 404, params=[session],
            answer=answer(VersionTexts))},
        f"{base}/protocol/pen": {"post": _op(
            "Hand the pen to a member of the session (the chair)", "the protocol", 400, 401,
            403, 404, 409, params=[session], body=PenBody, answer=one)},
        f"{base}/protocol/submit": {"post": _op(
            "Put the newest version to signing (the chair)", "the protocol", 401, 403, 404, 409,
            params=[session], body=VersionBody, answer=one)},
        f"{base}/protocol/sign": {"post": _op(
            "Sign the version put to signing: agree, or dissent with a text (a member)",
            "the protocol", 400, 401, 404, 409, params=[session], body=SignBody, answer=one)},
        f"{base}/protocol/reopen": {"post": _op(
            "Back to writing; the signatures given are voided (the chair)", "the protocol",
            401, 403, 404, 409, params=[session], answer=one)},
        f"{base}/protocol/close": {"post": _op(
            "Close it (the chair; someone agreed): the PDF to the case, Encapsulated PDF and "
            "SR to the archive beside each study", "the protocol", 401, 403, 404, 409,
            params=[session], answer=one)},
        f"{base}/protocol.pdf": {"get": _op(
            "The closed protocol as a PDF (application/pdf)", "the PDF", 401, 404,
            params=[session])},
        f"{base}/replay": {"get": _op(
            "The session's timeline to replay: what was shown, said and signed, with who",
            "the timeline", 401, 404, params=[session], answer=answer(ReplayPublic))},
        f"{base}/replay/state": {"get": _op(
            "The session's state after change ?seq", "the state", 400, 401, 404,
            params=[session, _query("seq", "seq")], answer=answer(ReplayState))},
    }


def _annotations(case: dict[str, Any]) -> dict[str, Any]:
    """A case's marks and key images (consult.annotations)."""
    mark = _path_param("mark_id")
    return {
        "/api/cases/{case_id}/marks": {"get": _op(
            "The case's measurements and graphic annotations (parties and consilium invitees)",
            "marks", 401, 404, params=[case], answer=answer(MarkList))},
        "/api/cases/{case_id}/marks/{mark_id}": {
            "put": _op("Add or replace one's own mark (its id chosen by the client; author and "
                       "colour set by the server)", "the mark as kept", 400, 401, 403, 404,
                       409, params=[case, mark], body=Mark, answer=answer(Mark)),
            "delete": _op("Delete one's own mark", "deleted", 401, 403, 404, 409,
                          params=[case, mark], answer=answer(Deleted))},
        "/api/cases/{case_id}/key-images": {
            "get": _op("The case's key images with series, instance number, frame, caption",
                       "key images", 401, 404, params=[case], answer=answer(KeyImageList)),
            "put": _op("Mark an image of the case as a key image (again: its caption changes)",
                       "the key image", 400, 401, 403, 404, 409, params=[case],
                       body=KeyImageCreate, answer=answer(KeyImage)),
            "delete": _op("Unmark one's own key image", "deleted", 400, 401, 403, 404, 409,
                          params=[case, _query("sop_instance_uid", "the image"),
                                  _query("frame", "its frame (multi-frame)")],
                          answer=answer(Deleted))},
    }


def _paths() -> dict[str, Any]:
    case = _path_param("case_id", "integer")
    series = _path_param("series_uid")
    study = _path_param("study")
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("Status and counts", "ok", answer=answer(Health))},
        "/api/me": {"get": _op("The caller: name, institution, roles, CSRF token", "ok", 401,
                               answer=answer(MePublic))},
        "/api/directory": {"get": _op(
            "Consult targets: the other institutions, their specialties and named specialists "
            "(clinicians)", "institutions", 401, 403, answer=answer(Directory))},
        "/api/directory/colleagues": {"get": _op(
            "The consultants of the caller's own institution, the caller excluded (whom a case "
            "can be reassigned to)", "colleagues", 401, 403, answer=answer(Colleagues))},
        "/api/studies": {"get": _op("Studies the caller may see (own institution + grants)",
                                    "a list of studies", 401, answer=answers(StudySummary))},
        "/api/archive/studies/{study_uid}/marks": {"get": _op(
            "Key images, measurements and graphic annotations of the study's archived Key "
            "Object Selections, TID 1500 reports and presentation states (read-only)",
            "marks, key images, presentation states", 401, 404,
            params=[_path_param("study_uid")], answer=answer(ArchivedMarks))},
        "/api/audit": {"get": _op(
            "Search the audit trail (heads, admins); format=csv exports", "events", 400, 401,
            403, answer=answers(AuditEventPublic),
            params=[_query(n, n) for n in ("patient_id", "study_uid", "actor", "action",
                                           "outcome", "since", "until", "limit", "offset",
                                           "format")])},
        "/api/ui": {"get": _op(
            "How the interface shows things: {time_zone, default_language, languages, "
            "ae_title, dicom_port} (anyone)", "settings", answer=Shape(UiConfig))},
        "/api/status": {"get": _op(
            "Admins: the institution's DICOM nodes with their last association, storage used "
            "and free, conclusions not written into the archive, identity providers reachable",
            "status", 401, 403, answer=Shape(SystemStatus))},
        "/api/worklist/finished": {"get": _op(
            "The cases the caller concluded (concluded, amended, closed), newest first",
            "cases", 401, answer=answers(CasePublic))},
        "/api/history/{what}": {"get": _op(
            "Heads: cases sent/received (what=cases: CaseRow) or turnaround median/p90 by "
            "institution, specialty and month (what=turnaround: TurnaroundRow; group=month "
            "or another subset of institution,specialty,month); format=csv exports", "rows",
            400, 401, 403, answer=OneOf((answers(CaseRow), answers(TurnaroundRow))),
            params=[_path_param("what")] + [_query(n, n) for n in (
                "status", "priority", "institution", "specialty", "person", "since", "until",
                "group", "format")])},
        "/api/cases": {
            "get": _op("My inbox (target side) and my requests", "cases", 401,
                       answer=answer(CaseList)),
            "post": _op("Open a draft consult request", "the case", 400, 401, 403,
                        answer=answer(CasePublic), body=CaseCreate),
        },
        "/api/cases/{case_id}": {
            "get": _op("A case with studies, messages, conclusions and attachments; its "
                       "allowed_actions are the caller's", "the case", 401, 404,
                       answer=answer(CaseDetail), params=[case]),
            "patch": _op(
                "Edit a draft (text, priority, target, studies, key images) or a returned "
                "case's text; 'version' is required (409 when someone else changed it)",
                "the case", 400, 401, 403, 404, 409, params=[case],
                answer=answer(CasePublic), body=CaseUpdate)},
        "/api/cases/{case_id}/history": {"get": _op(
            "The case's timeline: its events merged with views and retrievals of its studies "
            "(kind viewed/retrieved, from the audit trail)", "events", 401, 404,
            answer=answers(TimelineEntryPublic), params=[case])},
        "/api/cases/{case_id}/conclusion-draft": {
            "get": _op("The conclusion being written (only who may sign it sees it)",
                       "the draft or null", 401, 403, 404, 409, answer=answer(DraftAnswer),
                       params=[case]),
            "put": _op(
                "Save the conclusion being written; 'version' is the draft version it started "
                "from (null for the first save), 409 when it changed meanwhile", "the draft",
                400, 401, 403, 404, 409, params=[case], answer=answer(DraftAnswer),
                body=DraftUpdate)},
        "/api/cases/{case_id}/messages": {"post": _op(
            "Post a message to the case's thread", "the message", 400, 401, 404, 409,
            params=[case], answer=answer(MessagePublic), body=MessageCreate)},
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
            answer=answer(VolumeInfo), params=[series])},
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
        "/api/render/series/{series_uid}/roi-stats": {"get": _op(
            "Mean, stdev, min, max (HU for CT) and pixel count inside an elliptical ROI of an "
            "MPR plane, from the volume", "statistics", 400, 401, 404, 422, 503,
            answer=answer(RoiStats), params=[series] + [_query(n, n) for n in (
                "points", "slab", "mode")])},
        "/api/render/series/{series_uid}/prepare": {"post": _prepare(series)},
        "/api/render/series/{series_uid}/isosurface.stl": {"get": _op(
            "An isosurface as binary STL (patient coordinates)", "STL", 400, 401, 404, 422,
            503, params=[series, _query("level", "HU"), _query("step", "voxels")])},
        "/api/remote/pacs": {"get": _op(
            "The hospital PACS nodes the caller may query (own institution's, clinicians)",
            "PACS nodes", 401, answer=answers(PacsNode))},
        "/api/remote/pacs/{ae_title}/studies": {"get": _op(
            "Study-level C-FIND on a PACS of the caller's institution; at least one filter",
            "studies", 400, 401, 403, 404, 502, answer=answers(RemoteStudyPublic), params=[
                _path_param("ae_title"), _query("PatientID", "exact or wildcard (* ?)"),
                _query("PatientName", "wildcard (* ?), case-insensitive where the PACS is"),
                _query("StudyDate", "YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
                _query("AccessionNumber", "exact"),
                _query("ModalitiesInStudy", "modality codes, comma separated")])},
        "/api/remote/pacs/{ae_title}/studies/{study_uid}/retrieve": {"post": _op(
            "C-MOVE of a study from the PACS into the archive (owned by the PACS's "
            "institution); answers when the move is over", "the move's outcome", 400, 401,
            403, 404, 502, answer=answer(RetrieveOutcome),
            params=[_path_param("ae_title"), _path_param("study_uid")])},
        "/dicom-web/studies": {
            "get": _op("QIDO-RS study search (PS3.18)", "DICOM JSON", 400, 401),
            "post": _op("STOW-RS (multipart/related; type=application/dicom)",
                        "stored (or 202 partly, 409 none)", 400, 401, 409, 413, 415),
        },
        "/dicom-web/studies/{study}": {"get": _op(
            "WADO-RS retrieve a study (multipart/related)", "the instances", 401, 404, 406,
            params=[study])},
        "/dicom-web/studies/{study}/metadata": {"get": _op(
            "WADO-RS study metadata", "DICOM JSON", 401, 404, params=[study])},
    }
    paths.update(_consilia(case))
    paths.update(_protocol_paths())
    paths.update(_annotations(case))
    paths.update(_regional_paths())
    for action, body in TRANSITION_BODIES.items():
        signs = action in ("conclude", "amend")
        paths[f"/api/cases/{{case_id}}/{action}"] = {"post": _op(
            f"Case transition: {action}", "the signed conclusion" if signs else "the case",
            400, 401, 403, 404, 409, params=[case], body=body,
            answer=answer(ConclusionPublic if signs else CasePublic))}
    return paths


def _regional_paths() -> dict[str, Any]:
    """The worklist, service tokens, federation, media and de-identification."""
    procedure = _path_param("procedure_id", "integer")
    return {
        "/api/scheduled-procedures": {
            "get": _op("The institution's scheduled procedures (Modality Worklist items) with "
                       "what arrived for them (match: waiting, matched, mismatch)", "items",
                       400, 401, 403, answer=answers(ProcedurePublic), params=[
                           _query("from", "YYYYMMDD"), _query("to", "YYYYMMDD"),
                           _query("status", "scheduled, in_progress, completed, "
                                  "discontinued, cancelled"),
                           _query("match", "waiting, matched, mismatch")]),
            "post": _op("Book a scheduled procedure (its Study Instance UID is assigned)",
                        "the item", 400, 401, 403, 409, answer=answer(ProcedurePublic),
                        body=ProcedureCreate)},
        "/api/scheduled-procedures/{procedure_id}": {
            "get": _op("One scheduled procedure", "the item", 401, 403, 404,
                       answer=answer(ProcedurePublic), params=[procedure]),
            "patch": _op("Edit or cancel a scheduled procedure; 'version' is required (409 "
                         "when it changed meanwhile)", "the item", 400, 401, 403, 404, 409,
                         answer=answer(ProcedurePublic), body=ProcedureUpdate,
                         params=[procedure])},
        "/api/scheduled-procedures/{procedure_id}/steps": {"get": _op(
            "The performed procedure steps (MPPS) the modality reported for the item",
            "steps", 401, 403, 404, answer=answers(PerformedStepPublic), params=[procedure])},
        "/api/federation/sources": {"get": _op(
            "The sources a federated search asks for the caller: the archive and the PACS of "
            "the caller's institution", "sources", 401, answer=answers(SourcePublic))},
        "/api/federation/studies": {"get": _op(
            "One search over the archive and every PACS the caller may query, in parallel "
            "until federation.deadline; each study labelled with its source, each source "
            "with its state (ok, timeout, error)", "studies and sources", 400, 401,
            answer=answer(FederatedAnswer), params=[
                _query("PatientID", "exact or wildcard (* ?)"),
                _query("PatientName", "wildcard (* ?)"),
                _query("StudyDate", "YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
                _query("AccessionNumber", "exact"),
                _query("ModalitiesInStudy", "modality codes, comma separated")])},
        "/api/federation/retrieve": {"post": _op(
            "Start fetching a PACS study into the archive (C-MOVE or WADO-RS); poll the job "
            "for progress", "the job", 400, 401, 403, 404, answer=answer(RetrieveJobPublic),
            body=RetrieveRequest)},
        "/api/federation/retrieve/{job_id}": {"get": _op(
            "A retrieve's progress (instances arrived of those expected) and outcome",
            "the job", 401, 404, answer=answer(RetrieveJobPublic),
            params=[_path_param("job_id")])},
        "/api/federation/case-studies": {
            "post": _op("Add a study still only in the caller's PACS to a draft consult "
                        "request: fetched when it is submitted and shared with the target",
                        "the remote study", 400, 401, 403, 404, 409,
                        answer=answer(CaseRemoteStudyPublic), body=CaseStudyRequest),
            "get": _op("A request's remote studies and their state (pending, fetching, "
                       "fetched, failed)", "remote studies", 400, 401, 404,
                       answer=answers(CaseRemoteStudyPublic),
                       params=[_query("case_id", "the case")])},
        "/api/media/export": {"post": _op(
            "Studies as patient media: a ZIP or an ISO image with a DICOMDIR (PS3.10); with "
            "deidentify a PS3.15 Basic Profile copy (retain_dates: the longitudinal temporal "
            "option). Headers: X-Consilium-Flagged (instances that may carry burned-in text), "
            "X-Consilium-Pseudonyms", "application/zip or application/x-iso9660-image", 400,
            401, 403, 404, 413, 422, body=MediaExport)},
        "/api/media/printers": {"get": _op(
            "The film printers of the caller's institution", "printers", 401,
            answer=answers(FilmPrinterPublic))},
        "/api/media/print": {"post": _op(
            "Print images of a study on film (DICOM Basic Grayscale Print Management): layout "
            "columns x rows, film size, orientation, copies, medium", "what was printed", 400,
            401, 403, 404, 502, answer=answer(FilmPrinted), body=FilmPrint)},
        "/api/service-tokens": {
            "get": _op("Admins: the API tokens of the institution's machines (never the "
                       "secrets)", "tokens", 401, 403, answer=answers(ServiceTokenPublic)),
            "post": _op("Admins: issue an API token to a machine of the institution (shown "
                        "once)", "the token", 400, 401, 403, answer=answer(ServiceTokenIssued),
                        body=ServiceTokenCreate)},
        "/api/service-tokens/{token_id}": {"delete": _op(
            "Admins: revoke a machine's API token at once", "the revoked token", 401, 403,
            404, answer=answer(ServiceTokenPublic),
            params=[_path_param("token_id", "integer")])},
    }


def _shapes(node: Any, found: dict[tuple[type[BaseModel], JsonSchemaMode], None]) -> None:
    if isinstance(node, Shape):
        found[(node.model, node.mode)] = None
    elif isinstance(node, OneOf):
        _shapes(list(node.shapes), found)
    elif isinstance(node, dict):
        for value in node.values():
            _shapes(value, found)
    elif isinstance(node, list):
        for value in node:
            _shapes(value, found)


def _resolved(node: Any, refs: Mapping[Any, Any]) -> Any:
    if isinstance(node, Shape):
        ref = refs[(node.model, node.mode)]
        return {"type": "array", "items": ref} if node.many else ref
    if isinstance(node, OneOf):
        return {"oneOf": [_resolved(shape, refs) for shape in node.shapes]}
    if isinstance(node, dict):
        return {k: _resolved(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolved(v, refs) for v in node]
    return node


def openapi_document() -> dict[str, Any]:
    paths = _paths()
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    _shapes(paths, wanted)
    refs, definitions = models_json_schema(list(wanted), ref_template=REF)
    schemas = {"Error": ERROR, **definitions.get("$defs", {})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Consilium", "version": __version__,
                 "description": "Regional teleconsultation platform. Authenticate with the "
                 "session cookie (browsers; writes need X-CSRF-Token) or a bearer token from "
                 "a configured OpenID provider. DICOMweb follows PS3.18 under /dicom-web."},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": "consilium_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": _resolved(paths, refs),
    }
