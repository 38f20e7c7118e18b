"""Live notifications to the parties of a consult case over Socket.IO.

Rooms, joined at connect: ``user:<subject>`` for everyone, ``consult:<institution>`` for the
consultants and heads of an institution (its incoming requests). A notification carries no
patient data (case id, status, priority, version, what happened): the client fetches the case
through the API, where the policy applies.

The consult domain calls :meth:`CaseNotifier.notify` itself after every change (it is the
``notify`` of its :class:`~consilium.consult.context.ConsultContext`), from whichever thread
the change ran in: the message is composed there and its emission handed to the event loop of
the Socket.IO server. That loop is the one the app's lifespan binds at start-up, or else the
one found from the caller (the loop itself, or the loop of the anyio worker thread a route runs
the domain function in). A process with no event loop (the CLI) has nobody listening here: the
call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

import anyio.from_thread

from consilium.consult.models import CaseStatus, ConsultCase
from consilium.identity.models import Role
from consilium.identity.policy import Principal

log = logging.getLogger(__name__)

EVT_CASE_UPDATED = "case:updated"


def rooms_of(principal: Principal) -> list[str]:
    rooms = [f"user:{principal.subject}"]
    if principal.institution_id and (principal.has_role(Role.CONSULTANT)
                                     or principal.has_role(Role.HEAD)):
        rooms.append(f"consult:{principal.institution_id}")
    return rooms


def case_message(case: ConsultCase, what: str) -> tuple[dict[str, Any], list[str]]:
    """The payload of a change and the rooms it goes to."""
    payload = {"id": case.id, "status": case.status, "priority": case.priority,
               "version": case.version, "what": what,
               "due_at": case.due_at.isoformat() if case.due_at else None}
    targets = {f"user:{case.requester_subject}"}
    if case.assignee_subject:
        targets.add(f"user:{case.assignee_subject}")
    if case.status != CaseStatus.DRAFT.value:
        targets.add(f"consult:{case.target_institution}")
    return payload, sorted(targets)


class CaseNotifier:
    def __init__(self) -> None:
        self.sio: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def attach(self, sio: Any) -> None:
        self.sio = sio

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The event loop the Socket.IO server runs on (None when it stops)."""
        self.loop = loop

    def notify(self, case: ConsultCase, what: str) -> Future[None] | None:
        """Tell the parties of ``case`` that ``what`` happened; safe from any thread, returns
        at once (the emission's future, for whoever wants to wait for it)."""
        if self.sio is None:
            return None
        loop = self.loop if self.loop is not None and not self.loop.is_closed() else None
        if loop is None:
            loop = self.loop = _server_loop()
        if loop is None:
            return None
        payload, rooms = case_message(case, what)
        try:
            return asyncio.run_coroutine_threadsafe(self._emit(payload, rooms), loop)
        except RuntimeError:  # the loop stopped meanwhile: nobody left to tell
            return None

    async def _emit(self, payload: dict[str, Any], rooms: list[str]) -> None:
        if self.sio is None:
            return
        try:
            for room in rooms:
                await self.sio.emit(EVT_CASE_UPDATED, payload, room=room)
        except Exception:  # a notification lost is a reload later, never a failed change
            log.exception("case notification %s of case %s failed", payload["what"],
                          payload["id"])


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the caller: the running one, or the one whose worker thread this is
    (anyio's, as Starlette's ``run_in_threadpool`` uses); None in a plain thread."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        return anyio.from_thread.run_sync(asyncio.get_running_loop)
    except RuntimeError:
        return None
