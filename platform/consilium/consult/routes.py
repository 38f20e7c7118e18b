"""HTTP adapters of the consult workflow: parse, call one domain function, render.

    POST /api/cases                          open a draft {question, study_uids, target_institution,
                                             priority?, target_specialty?, target_subject?,
                                             clinical_info?, key_images?}
    GET  /api/cases                          my inbox (target side) and my requests
    GET  /api/cases/{id}                     the case, its studies, messages and conclusions
    PATCH /api/cases/{id}                    edit a draft (or a returned case's text) {version,
                                             question?, clinical_info?, priority?, target_*?,
                                             study_uids?, key_images?}
    GET  /api/cases/{id}/history             the timeline
    POST /api/cases/{id}/{action}            submit, resubmit, accept, decline, return, reassign,
                                             conclude, amend, close, cancel; body {version, ...}
    POST /api/cases/{id}/messages            {text}
    GET  /api/cases/{id}/conclusion-draft    the conclusion being written (who signs only)
    PUT  /api/cases/{id}/conclusion-draft    save it {version (null for the first save),
                                             findings, impression, recommendations}

Attachments and the conclusion's PDF: :mod:`consilium.consult.document_routes`.

Errors: 400 invalid, 401, 403, 404 (also for cases the caller may not see), 409 (a transition
the state does not allow, or a stale ``version``) with ``{"error": reason}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.routing import Route

from consilium.consult import documents as docs
from consilium.consult import drafts
from consilium.consult import workflow as wf
from consilium.consult.document_routes import document_routes
from consilium.consult.models import (
    CaseMessage,
    CaseStudy,
    ConclusionDraft,
    ConsultCase,
    Priority,
)
from consilium.errors import InvalidInput
from consilium.http_api import json_endpoint, read_json
from consilium.identity.policy import Principal

OnChange = Callable[[ConsultCase, str], Awaitable[None]]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def case_json(case: ConsultCase) -> dict[str, Any]:
    return {k: _plain(v) for k, v in case.model_dump().items()}


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request)  # 400 if not JSON, 413 over http.max_json_kb
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, required: bool = False) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInput(f"'{key}' must be {'a non-empty' if required else 'a'} string")
    return value


def _version(body: dict[str, Any]) -> int | None:
    value = body.get("version")
    if value is not None and not isinstance(value, int):
        raise InvalidInput("'version' must be an integer")
    return value


def _key_images(body: dict[str, Any], study_uids: list[str]) -> dict[str, list[str]]:
    """``{"<study uid>": ["<SOP instance uid>", ...]}``, only for linked studies."""
    value = body.get("key_images") or {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(u, str) for u in v)
            for k, v in value.items()):
        raise InvalidInput("'key_images' maps study UIDs to lists of SOP instance UIDs")
    stray = set(value) - set(study_uids)
    if stray:
        raise InvalidInput(f"key images of a study the case does not link: {sorted(stray)[0]}")
    return {k: list(dict.fromkeys(v)) for k, v in value.items()}


def consult_routes(ctx: wf.ConsultContext, on_change: OnChange | None = None) -> list[Route]:
    """The routes; ``on_change`` is told of every change (live notifications)."""

    async def changed(case_id: int, what: str) -> None:
        if on_change is not None:
            with Session(ctx.engine) as session:
                case = session.get(ConsultCase, case_id)
            if case is not None:
                await on_change(case, what)

    async def create(request: Request, principal: Principal) -> dict[str, Any]:
        body = await _body(request)
        uids = body.get("study_uids")
        if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
            raise InvalidInput("'study_uids' must be a list of UIDs")
        try:
            priority = Priority(body.get("priority", "routine"))
        except ValueError as exc:
            raise InvalidInput("'priority' is routine, urgent or emergency") from exc
        case = wf.open_case(
            ctx, principal, question=_text(body, "question", True), study_uids=uids,
            target_institution=_text(body, "target_institution", True), priority=priority,
            target_specialty=_text(body, "target_specialty"),
            target_subject=_text(body, "target_subject"),
            clinical_info=_text(body, "clinical_info"), key_images=_key_images(body, uids))
        await changed(case.id or 0, "created")
        return case_json(case)

    async def edit(request: Request, principal: Principal) -> dict[str, Any]:
        body = await _body(request)
        fields: dict[str, Any] = {}
        for key in ("question", "clinical_info", "target_institution", "target_specialty",
                    "target_subject"):
            if key in body:
                fields[key] = _text(body, key)
        if "priority" in body:
            try:
                fields["priority"] = Priority(body["priority"])
            except ValueError as exc:
                raise InvalidInput("'priority' is routine, urgent or emergency") from exc
        if "study_uids" in body:
            uids = body["study_uids"]
            if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
                raise InvalidInput("'study_uids' must be a list of UIDs")
            fields["study_uids"] = uids
        if "key_images" in body:
            linked = fields.get("study_uids") or list(body["key_images"] or {})
            fields["key_images"] = _key_images(body, linked)
        case_id = int(request.path_params["case_id"])
        case = wf.edit_case(ctx, principal, case_id, _version(body), wf.CaseEdit(**fields))
        await changed(case_id, "edited")
        return case_json(case)

    async def listing(request: Request, principal: Principal) -> dict[str, Any]:
        with Session(ctx.engine) as session:
            mine = list(session.exec(select(ConsultCase).where(
                ConsultCase.requester_subject == principal.subject)
                .order_by(col(ConsultCase.created_at).desc()).limit(200)))
        return {"inbox": [case_json(c) for c in wf.inbox(ctx, principal)],
                "requests": [case_json(c) for c in mine]}

    async def detail(request: Request, principal: Principal) -> dict[str, Any]:
        case_id = int(request.path_params["case_id"])
        with Session(ctx.engine) as session:
            case = wf.load_case(session, principal, case_id)
            studies = list(session.exec(select(CaseStudy).where(CaseStudy.case_id == case_id)))
            messages = list(session.exec(select(CaseMessage).where(
                CaseMessage.case_id == case_id).order_by(col(CaseMessage.at))))
        archived = docs.archived_of(ctx, case_id)
        return {
            "case": case_json(case),
            "studies": [{"study_uid": s.study_uid, "institution": s.institution_id,
                         "key_images": [k for k in s.key_images.split("\\") if k]}
                        for s in studies],
            "messages": [{k: _plain(v) for k, v in m.model_dump().items()} for m in messages],
            "conclusions": [docs.conclusion_json(c, archived.get(c.id or 0, []))
                            for c in wf.conclusions(ctx, principal, case_id)],
            "attachments": [docs.attachment_json(a)
                            for a in docs.attachments_of(ctx, principal, case_id)],
        }

    async def timeline(request: Request, principal: Principal) -> list[dict[str, Any]]:
        entries = wf.timeline(ctx, principal, int(request.path_params["case_id"]))
        return [{k: _plain(v) for k, v in asdict(e).items()} for e in entries]

    def draft_json(draft: ConclusionDraft | None) -> dict[str, Any]:
        if draft is None:
            return {"draft": None}
        return {"draft": {k: _plain(v) for k, v in draft.model_dump().items()}}

    async def get_draft(request: Request, principal: Principal) -> dict[str, Any]:
        return draft_json(drafts.conclusion_draft(ctx, principal,
                                                  int(request.path_params["case_id"])))

    async def save_draft(request: Request, principal: Principal) -> dict[str, Any]:
        body = await _body(request)
        return draft_json(drafts.save_conclusion_draft(
            ctx, principal, int(request.path_params["case_id"]), version=_version(body),
            findings=_text(body, "findings"), impression=_text(body, "impression"),
            recommendations=_text(body, "recommendations")))

    async def message(request: Request, principal: Principal) -> dict[str, Any]:
        body = await _body(request)
        posted = wf.post_message(ctx, principal, int(request.path_params["case_id"]),
                                 _text(body, "text", True))
        await changed(posted.case_id, "message")
        return {k: _plain(v) for k, v in posted.model_dump().items()}

    async def act(request: Request, principal: Principal) -> dict[str, Any]:
        result = await transition(request, principal)
        await changed(int(request.path_params["case_id"]), request.path_params["action"])
        return result

    async def transition(request: Request, principal: Principal) -> dict[str, Any]:
        case_id = int(request.path_params["case_id"])
        action = request.path_params["action"]
        body = await _body(request)
        version = _version(body)
        if action in ("submit", "accept", "close", "cancel"):
            function = {"submit": wf.submit, "accept": wf.accept, "close": wf.close,
                        "cancel": wf.cancel}[action]
            return case_json(function(ctx, principal, case_id, version=version))
        if action == "resubmit":
            return case_json(wf.resubmit(ctx, principal, case_id, _text(body, "answer"),
                                         version=version))
        if action == "decline":
            return case_json(wf.decline(ctx, principal, case_id, _text(body, "reason", True),
                                        version=version))
        if action == "return":
            return case_json(wf.return_for_information(
                ctx, principal, case_id, _text(body, "request", True), version=version))
        if action == "reassign":
            specialty = body.get("specialty")
            return case_json(wf.reassign(
                ctx, principal, case_id, version=version, subject=_text(body, "subject"),
                specialty=specialty if isinstance(specialty, str) else None))
        if action in ("conclude", "amend"):
            fields = {"findings": _text(body, "findings"),
                      "impression": _text(body, "impression", True),
                      "recommendations": _text(body, "recommendations")}
            signed = (wf.conclude(ctx, principal, case_id, version=version, **fields)
                      if action == "conclude" else
                      wf.amend(ctx, principal, case_id, version=version,
                               reason=_text(body, "reason", True), **fields))
            return docs.conclusion_json(signed, docs.archived_of(ctx, case_id).get(
                signed.id or 0, []))
        raise InvalidInput(f"unknown action {action!r}")

    return [
        Route("/api/cases", json_endpoint(create), methods=["POST"]),
        Route("/api/cases", json_endpoint(listing), methods=["GET"]),
        Route("/api/cases/{case_id:int}", json_endpoint(detail), methods=["GET"]),
        Route("/api/cases/{case_id:int}", json_endpoint(edit), methods=["PATCH"]),
        Route("/api/cases/{case_id:int}/history", json_endpoint(timeline), methods=["GET"]),
        Route("/api/cases/{case_id:int}/messages", json_endpoint(message), methods=["POST"]),
        Route("/api/cases/{case_id:int}/conclusion-draft", json_endpoint(get_draft),
              methods=["GET"]),
        Route("/api/cases/{case_id:int}/conclusion-draft", json_endpoint(save_draft),
              methods=["PUT"]),
        *document_routes(ctx, changed),  # before the catch-all {action}
        Route("/api/cases/{case_id:int}/{action}", json_endpoint(act), methods=["POST"]),
    ]
