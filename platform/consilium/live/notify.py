"""Live notifications to the parties of a consult case over Socket.IO.

Rooms, joined at connect: ``user:<subject>`` for everyone, ``consult:<institution>`` for the
consultants and heads of an institution (its incoming requests). A notification carries no
patient data (case id, status, priority, version, what happened): the client fetches the case
through the API, where the policy applies.
"""

from __future__ import annotations

from typing import Any

from consilium.consult.models import CaseStatus, ConsultCase
from consilium.identity.models import Role
from consilium.identity.policy import Principal

EVT_CASE_UPDATED = "case:updated"


def rooms_of(principal: Principal) -> list[str]:
    rooms = [f"user:{principal.subject}"]
    if principal.institution_id and (principal.has_role(Role.CONSULTANT)
                                     or principal.has_role(Role.HEAD)):
        rooms.append(f"consult:{principal.institution_id}")
    return rooms


class CaseNotifier:
    def __init__(self) -> None:
        self.sio: Any = None

    def attach(self, sio: Any) -> None:
        self.sio = sio

    async def case_changed(self, case: ConsultCase, what: str) -> None:
        if self.sio is None:
            return
        payload = {"id": case.id, "status": case.status, "priority": case.priority,
                   "version": case.version, "what": what,
                   "due_at": case.due_at.isoformat() if case.due_at else None}
        targets = {f"user:{case.requester_subject}"}
        if case.assignee_subject:
            targets.add(f"user:{case.assignee_subject}")
        if case.status != CaseStatus.DRAFT.value:
            targets.add(f"consult:{case.target_institution}")
        for room in sorted(targets):
            await self.sio.emit(EVT_CASE_UPDATED, payload, room=room)
