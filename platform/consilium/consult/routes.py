"""HTTP adapters of the consult workflow: read the body as its declared shape, call one domain
function in a worker thread (they use the database), answer its public shape.

    POST /api/cases                          open a draft (CaseCreate)
    GET  /api/cases                          my inbox (target side) and my requests (CaseList)
    GET  /api/cases/{id}                     the case, its studies, messages, conclusions and
                                             attachments (CaseDetail)
    PATCH /api/cases/{id}                    edit a draft, or a returned case's text (CaseUpdate)
    GET  /api/cases/{id}/history             the timeline (TimelineEntryPublic)
    POST /api/cases/{id}/{action}            submit, resubmit, accept, decline, return, reassign,
                                             conclude, amend, close, cancel (TRANSITION_BODIES)
    POST /api/cases/{id}/messages            {text} (MessageCreate)
    GET  /api/cases/{id}/conclusion-draft    the conclusion being written (who signs only)
    PUT  /api/cases/{id}/conclusion-draft    save it (DraftUpdate)
    .../marks, .../key-images                the case's annotations and key images
                                             (:mod:`consilium.consult.annotation_routes`)

Every case in an answer carries ``allowed_actions``: what the caller may do with it now (the
state machine and the policy, :func:`consilium.consult.workflow.allowed_actions`).
Attachments and the conclusion's PDF: :mod:`consilium.consult.document_routes`. The parties are
notified by the domain functions themselves.

Errors (answered by the web edge): 400 invalid (the message names the field), 401, 403, 404
(also for cases the caller may not see), 409 (a transition the state does not allow, or a stale
``version``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.consult import drafts, reading
from consilium.consult import workflow as wf
from consilium.consult.annotation_routes import annotation_routes
from consilium.consult.archiving import archived_of
from consilium.consult.context import ConsultContext
from consilium.consult.document_routes import attachment_public, document_routes
from consilium.consult.models import (
    ArchivedDocument,
    ArchivedPublic,
    ArchiveFailure,
    CaseCreate,
    CaseDetail,
    CaseList,
    CasePublic,
    CaseStudyPublic,
    CaseUpdate,
    Conclusion,
    ConclusionAmend,
    ConclusionCreate,
    ConclusionDraft,
    ConclusionPublic,
    ConsultCase,
    Decline,
    DraftAnswer,
    DraftPublic,
    DraftUpdate,
    MessageCreate,
    MessagePublic,
    Reassignment,
    Resubmission,
    ReturnForInformation,
    TimelineEntryPublic,
    Transition,
)
from consilium.errors import InvalidInput
from consilium.http_api import json_endpoint, read_model, web_actor
from consilium.identity.policy import Principal

# the body of each transition, by the action in the path
TRANSITION_BODIES: dict[str, type[Transition]] = {
    "submit": Transition, "accept": Transition, "close": Transition, "cancel": Transition,
    "resubmit": Resubmission, "decline": Decline, "return": ReturnForInformation,
    "reassign": Reassignment, "conclude": ConclusionCreate, "amend": ConclusionAmend,
}


def case_public(principal: Principal, case: ConsultCase) -> CasePublic:
    return CasePublic.model_validate(case, update={
        "allowed_actions": wf.allowed_actions(principal, case)})


def conclusion_public(conclusion: Conclusion, archived: list[ArchivedDocument]
                      ) -> ConclusionPublic:
    """A signed version as the API shows it: its fields, where its PDF is, what was archived."""
    return ConclusionPublic.model_validate(conclusion, update={
        "pdf_url": f"/api/cases/{conclusion.case_id}/conclusions/{conclusion.version}.pdf",
        "archived": [ArchivedPublic(study_uid=r.study_uid, series_uid=r.series_uid,
                                    sop_instance_uid=r.sop_instance_uid,
                                    sop_class_uid=r.sop_class_uid, kind=r.kind)
                     for r in archived if r.status == "stored"],
        "archive_failures": [ArchiveFailure(study_uid=r.study_uid, kind=r.kind,
                                            reason=r.reason)
                             for r in archived if r.status != "stored"]})


def draft_answer(draft: ConclusionDraft | None) -> DraftAnswer:
    return DraftAnswer(draft=None if draft is None else DraftPublic.model_validate(draft))


def case_detail(principal: Principal, view: reading.CaseView) -> CaseDetail:
    return CaseDetail(
        case=CasePublic.model_validate(view.case, update={
            "allowed_actions": view.allowed_actions}),
        studies=[CaseStudyPublic(study_uid=s.study_uid, institution=s.institution_id,
                                 key_images=[k.image.sop_instance_uid for k in view.key_images
                                             if k.image.study_uid == s.study_uid])
                 for s in view.studies],
        key_images=view.key_images,
        messages=[MessagePublic.model_validate(m) for m in view.messages],
        conclusions=[conclusion_public(c, view.archived.get(c.id or 0, []))
                     for c in view.conclusions],
        attachments=[attachment_public(a) for a in view.attachments])


def transition(ctx: ConsultContext, principal: Principal, case_id: int, action: str,
               body: Transition) -> ConsultCase | Conclusion:
    """The domain function of ``action`` with what its body says."""
    version = body.version
    if isinstance(body, ConclusionAmend):
        return wf.amend(ctx, principal, case_id, version=version, findings=body.findings,
                        impression=body.impression, recommendations=body.recommendations,
                        reason=body.reason)
    if isinstance(body, ConclusionCreate):
        return wf.conclude(ctx, principal, case_id, version=version, findings=body.findings,
                           impression=body.impression, recommendations=body.recommendations)
    if isinstance(body, Resubmission):
        return wf.resubmit(ctx, principal, case_id, body.answer, version=version)
    if isinstance(body, Decline):
        return wf.decline(ctx, principal, case_id, body.reason, version=version)
    if isinstance(body, ReturnForInformation):
        return wf.return_for_information(ctx, principal, case_id, body.request,
                                         version=version)
    if isinstance(body, Reassignment):
        return wf.reassign(ctx, principal, case_id, version=version, subject=body.subject,
                           specialty=body.specialty)
    function = {"submit": wf.submit, "accept": wf.accept, "close": wf.close,
                "cancel": wf.cancel}[action]
    return function(ctx, principal, case_id, version=version)


def consult_routes(ctx: ConsultContext) -> list[Route]:

    async def create(request: Request, principal: Principal) -> CasePublic:
        body = await read_model(request, CaseCreate)
        case = await run_in_threadpool(
            wf.open_case, ctx, principal, question=body.question, study_uids=body.study_uids,
            target_institution=body.target_institution, priority=body.priority,
            target_specialty=body.target_specialty, target_subject=body.target_subject,
            clinical_info=body.clinical_info, key_images=body.key_images,
            actor=web_actor(request, principal))
        return case_public(principal, case)

    async def edit(request: Request, principal: Principal) -> CasePublic:
        body = await read_model(request, CaseUpdate)
        changes = wf.CaseEdit(**body.model_dump(exclude={"version"}, exclude_unset=True))
        case = await run_in_threadpool(wf.edit_case, ctx, principal,
                                       int(request.path_params["case_id"]), body.version,
                                       changes, web_actor(request, principal))
        return case_public(principal, case)

    async def listing(_request: Request, principal: Principal) -> CaseList:
        def read() -> CaseList:
            return CaseList(inbox=[case_public(principal, c)
                                   for c in reading.inbox(ctx, principal)],
                            requests=[case_public(principal, c)
                                      for c in reading.requests_of(ctx, principal)])
        return await run_in_threadpool(read)

    async def detail(request: Request, principal: Principal) -> CaseDetail:
        view = await run_in_threadpool(reading.case_view, ctx, principal,
                                       int(request.path_params["case_id"]))
        return case_detail(principal, view)

    async def timeline(request: Request, principal: Principal) -> list[TimelineEntryPublic]:
        entries = await run_in_threadpool(reading.timeline, ctx, principal,
                                          int(request.path_params["case_id"]))
        return [TimelineEntryPublic(**asdict(e)) for e in entries]

    async def get_draft(request: Request, principal: Principal) -> DraftAnswer:
        return draft_answer(await run_in_threadpool(
            drafts.conclusion_draft, ctx, principal, int(request.path_params["case_id"])))

    async def save_draft(request: Request, principal: Principal) -> DraftAnswer:
        body = await read_model(request, DraftUpdate)
        return draft_answer(await run_in_threadpool(
            drafts.save_conclusion_draft, ctx, principal, int(request.path_params["case_id"]),
            version=body.version, findings=body.findings, impression=body.impression,
            recommendations=body.recommendations))

    async def message(request: Request, principal: Principal) -> MessagePublic:
        body = await read_model(request, MessageCreate)
        posted = await run_in_threadpool(wf.post_message, ctx, principal,
                                         int(request.path_params["case_id"]), body.text)
        return MessagePublic.model_validate(posted)

    async def act(request: Request, principal: Principal) -> BaseModel:
        case_id = int(request.path_params["case_id"])
        action = request.path_params["action"]
        shape = TRANSITION_BODIES.get(action)
        if shape is None:
            raise InvalidInput(f"unknown action {action!r}")
        body = await read_model(request, shape)

        def run() -> BaseModel:
            done = transition(ctx, principal, case_id, action, body)
            if isinstance(done, Conclusion):
                return conclusion_public(done, archived_of(ctx, case_id).get(done.id or 0, []))
            return case_public(principal, done)

        return await run_in_threadpool(run)

    def endpoint(handler: Callable[[Request, Principal], Awaitable[Any]]) -> Any:
        return json_endpoint(handler)

    return [
        Route("/api/cases", endpoint(create), methods=["POST"]),
        Route("/api/cases", endpoint(listing), methods=["GET"]),
        Route("/api/cases/{case_id:int}", endpoint(detail), methods=["GET"]),
        Route("/api/cases/{case_id:int}", endpoint(edit), methods=["PATCH"]),
        Route("/api/cases/{case_id:int}/history", endpoint(timeline), methods=["GET"]),
        Route("/api/cases/{case_id:int}/messages", endpoint(message), methods=["POST"]),
        Route("/api/cases/{case_id:int}/conclusion-draft", endpoint(get_draft),
              methods=["GET"]),
        Route("/api/cases/{case_id:int}/conclusion-draft", endpoint(save_draft),
              methods=["PUT"]),
        *document_routes(ctx),  # before the catch-all {action}
        *annotation_routes(ctx),
        Route("/api/cases/{case_id:int}/{action}", endpoint(act), methods=["POST"]),
    ]
