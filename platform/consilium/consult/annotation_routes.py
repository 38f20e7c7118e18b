"""HTTP adapters of a case's annotations and key images (:mod:`.annotations`).

    GET    /api/cases/{id}/marks                  the case's marks (MarkList)
    PUT    /api/cases/{id}/marks/{mark_id}        add or replace one's own mark (body: Mark)
    DELETE /api/cases/{id}/marks/{mark_id}        delete one's own mark
    GET    /api/cases/{id}/key-images             the case's key images (KeyImageList)
    PUT    /api/cases/{id}/key-images             mark an image, or change its caption
                                                  (KeyImageCreate)
    DELETE /api/cases/{id}/key-images?sop_instance_uid=&frame=   unmark one's own key image

The author, colour and source of a mark are the server's (what a client sends there is
replaced). Errors: 400 (the message names what), 401, 403 (not the author), 404 (a case the
caller may not see, as one that does not exist), 409 (a closed case; too many marks).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.archive.marks import ImageRef, KeyImage, Mark
from consilium.consult import annotations as an
from consilium.consult.annotation_models import (
    KeyImageCreate,
    KeyImageDelete,
    KeyImageList,
    MarkList,
)
from consilium.consult.context import ConsultContext
from consilium.errors import InvalidInput
from consilium.http_api import describe, json_endpoint, read_model, web_actor
from consilium.identity.policy import Principal


class Deleted(BaseModel):
    """What a DELETE answers."""

    deleted: str


def annotation_routes(ctx: ConsultContext) -> list[Route]:

    def case_of(request: Request) -> int:
        return int(request.path_params["case_id"])

    async def marks(request: Request, principal: Principal) -> MarkList:
        return MarkList(marks=await run_in_threadpool(an.marks_of_case, ctx, principal,
                                                      case_of(request)))

    async def markable(request: Request, principal: Principal) -> None:
        """The case first, then the body: a stranger learns nothing from a 400."""
        await run_in_threadpool(an.check_markable, ctx, principal, case_of(request))

    async def put_mark(request: Request, principal: Principal) -> Mark:
        await markable(request, principal)
        body = await read_model(request, Mark)
        if body.id != request.path_params["mark_id"]:
            raise InvalidInput("the mark's id is not the one in the path")
        return await run_in_threadpool(an.put_mark, ctx, principal, case_of(request), body,
                                       web_actor(request, principal))

    async def delete_mark(request: Request, principal: Principal) -> Deleted:
        mark_id = str(request.path_params["mark_id"])
        await run_in_threadpool(an.delete_mark, ctx, principal, case_of(request), mark_id,
                                web_actor(request, principal))
        return Deleted(deleted=mark_id)

    async def key_images(request: Request, principal: Principal) -> KeyImageList:
        return KeyImageList(key_images=await run_in_threadpool(
            an.key_images_of_case, ctx, principal, case_of(request)))

    async def put_key_image(request: Request, principal: Principal) -> KeyImage:
        await markable(request, principal)
        body = await read_model(request, KeyImageCreate)
        image = ImageRef(study_uid=body.study_uid, series_uid=body.series_uid,
                         sop_instance_uid=body.sop_instance_uid, frame=body.frame)
        return await run_in_threadpool(an.put_key_image, ctx, principal, case_of(request),
                                       image, body.caption, web_actor(request, principal))

    async def delete_key_image(request: Request, principal: Principal) -> Deleted:
        await markable(request, principal)
        query: dict[str, Any] = dict(request.query_params)
        if "frame" in query:
            query["frame"] = query["frame"] if not query["frame"].isdigit() else int(
                query["frame"])
        try:
            which = KeyImageDelete.model_validate(query)
        except ValidationError as exc:
            raise InvalidInput(describe(exc.errors(include_url=False))) from exc
        await run_in_threadpool(an.delete_key_image, ctx, principal, case_of(request),
                                which.sop_instance_uid, which.frame,
                                web_actor(request, principal))
        return Deleted(deleted=which.sop_instance_uid)

    base = "/api/cases/{case_id:int}"
    return [
        Route(f"{base}/marks", json_endpoint(marks), methods=["GET"]),
        Route(f"{base}/marks/{{mark_id}}", json_endpoint(put_mark), methods=["PUT"]),
        Route(f"{base}/marks/{{mark_id}}", json_endpoint(delete_mark), methods=["DELETE"]),
        Route(f"{base}/key-images", json_endpoint(key_images), methods=["GET"]),
        Route(f"{base}/key-images", json_endpoint(put_key_image), methods=["PUT"]),
        Route(f"{base}/key-images", json_endpoint(delete_key_image), methods=["DELETE"]),
    ]
