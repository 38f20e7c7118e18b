"""The mark events of the ``/consilium`` namespace: ``mark:put``, ``mark:delete`` (durable
changes ``mark.put`` / ``mark.deleted``, kept with the case) and ``mark:drawing`` (the stroke in
progress, coalesced per participant like the pointer).

A mark is checked like one sent over HTTP (:func:`consilium.consult.annotations.checked_mark`:
on an image of the case's studies or in the volume of one of its series, enough points, the
author and colour the server's); only its author changes or deletes it (403 ``not-yours``; the
sequencer checks it again in the transaction that numbers the change, see
:mod:`.mark_store`). Every put and delete is audited (``store``) and tells the case's parties
that its marks changed (``case:updated``, what ``marks``), for viewers outside the session.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import anyio
from pydantic import ValidationError

from consilium.archive.marks import Mark
from consilium.audit import AuditAction
from consilium.consult.annotations import author_color, checked_mark, mark_author
from consilium.errors import Conflict, Forbidden, InvalidInput
from consilium.live import events as ev
from consilium.live.connection import Connection
from consilium.live.events import ChangeKind
from consilium.live.feed import Participant
from consilium.live.hub import LiveHub
from consilium.live.sequencer import Draft
from consilium.live.sessions import LiveContext


class Namespace(Protocol):
    """What mark events use of the namespace they are events of
    (:class:`.namespace.ConsiliumNamespace`): its hub and context, and what every event
    handler does with a session."""

    @property
    def hub(self) -> LiveHub: ...
    @property
    def ctx(self) -> LiveContext: ...

    async def state(self, participant: Participant) -> dict[str, Any]:
        """The session's state as this process's feed has it."""

    async def of_case(self, participant: Participant, series_uid: str,
                      study_uid: str | None = None) -> None:
        """Refused (400 ``not-in-case``) unless the series is one of the case's."""

    async def durable(self, conn: Connection, participant: Participant, kind: ChangeKind,
                      payload: dict[str, Any], refused: str) -> dict[str, Any]:
        """A durable change, under the connection's rate; its acknowledgement."""


def _mark(data: dict[str, Any]) -> Mark:
    try:
        mark = Mark.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"bad mark: {where}: {first.get('msg', 'invalid')}",
                           reason="parameter") from exc
    numbers = [v for p in mark.points for v in p] + [v for p in mark.points3d for v in p]
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidInput("bad mark: points must be finite numbers", reason="parameter")
    return mark


class MarkEvents:
    def __init__(self, namespace: Namespace) -> None:
        self.ns = namespace

    async def _open(self, participant: Participant) -> dict[str, Any]:
        state = await self.ns.state(participant)
        if state["status"] != "open":
            raise Conflict("the session is not open", reason="state")
        return state

    async def _series_study(self, participant: Participant, mark: Mark) -> str:
        """The study of the series the mark is on, if it is one of the case's (400 else)."""
        series = mark.image.series_uid if mark.image is not None else mark.series_uid
        if series is None:
            raise InvalidInput("a mark names its image or its series", reason="parameter")
        study = mark.image.study_uid if mark.image is not None else None
        await self.ns.of_case(participant, series, study)
        feed = await self.ns.hub.feed(participant.session_id)
        return await feed.series_study(series) or ""

    async def _own(self, case_id: int, mark_id: str, participant: Participant,
                   deleting: bool) -> None:
        author = await anyio.to_thread.run_sync(mark_author, self.ns.ctx.engine, case_id, mark_id)
        if author is None and deleting:
            raise InvalidInput(f"no mark {mark_id!r} in this case", reason="parameter")
        if author is not None and author != participant.subject:
            raise Forbidden("only its author changes a mark", reason="not-yours")

    def _audit(self, conn: Connection, study_uid: str, case_id: int, mark_id: str,
               op: str) -> None:
        self.ns.ctx.audit.submit(conn.reader().actor, AuditAction.STORE, study_uid=study_uid,
                                 detail={"what": "case mark", "case": case_id,
                                         "mark": mark_id, "op": op})

    async def _tell(self, case_id: int) -> None:
        if self.ns.hub.notify_case is not None:
            await self.ns.hub.notify_case(case_id, "marks")

    async def put(self, conn: Connection, participant: Participant, m: ev.MarkPut
                  ) -> dict[str, Any]:
        state = await self._open(participant)
        case_id = int(state["case_id"])
        mark = _mark(m.mark)
        study = await self._series_study(participant, mark)
        feed = await self.ns.hub.feed(participant.session_id)
        kept = await anyio.to_thread.run_sync(
            checked_mark, self.ns.ctx.engine, list(feed.study_uids), mark, participant.subject,
            participant.name, participant.institution)
        await self._own(case_id, mark.id, participant, deleting=False)
        answer = await self.ns.durable(conn, participant, ChangeKind.MARK_PUT,
                                        {"mark": kept.model_dump(mode="json")},
                                        "the mark cannot be changed now")
        self._audit(conn, study, case_id, mark.id, "put")
        await self._tell(case_id)
        return answer

    async def delete(self, conn: Connection, participant: Participant, m: ev.MarkDelete
                     ) -> dict[str, Any]:
        state = await self._open(participant)
        case_id = int(state["case_id"])
        await self._own(case_id, m.id, participant, deleting=True)
        found = next((a for a in state["annotations"] if a.get("id") == m.id), None)
        answer = await self.ns.durable(conn, participant, ChangeKind.MARK_DELETED,
                                        {"id": m.id}, "the mark cannot be deleted now")
        image = (found or {}).get("image") or {}
        self._audit(conn, str(image.get("study_uid", "")), case_id, m.id, "delete")
        await self._tell(case_id)
        return answer

    async def drawing(self, conn: Connection, participant: Participant, m: ev.MarkDrawing
                      ) -> dict[str, Any]:
        await self._open(participant)
        payload: dict[str, Any] = {"mark": None}
        if m.mark is not None:
            mark = _mark(m.mark)
            await self._series_study(participant, mark)
            payload["mark"] = mark.model_copy(update={
                "author_subject": participant.subject, "author_name": participant.name,
                "author_institution": participant.institution,
                "color": author_color(participant.subject)}).model_dump(mode="json")
        self.ns.hub.offer(Draft(participant.session_id, ChangeKind.MARK_DRAWING,
                                participant.subject, payload))
        return {"ok": True}
