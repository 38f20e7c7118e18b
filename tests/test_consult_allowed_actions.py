"""``allowed_actions`` says exactly what the server then accepts: for every state of a case and
every kind of person (the requester, their head and colleague, the target's consultant, head
and referring doctor, an admin), every action is tried over HTTP; one listed goes through, one
not listed is refused (403, 404 or 409) and changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlmodel import Session

from consilium.consult import workflow as wf
from consilium.consult.context import ConsultContext
from consilium.consult.models import CaseStatus, ConsultCase
from tests.inprocess import CITY_STUDY, InProcess, in_process
from tests.test_consult_notify import consult_context

REQUESTER = "ivanova"  # city hospital, referring
TARGET = "kuznetsova"  # regional center, consultant: accepts and signs
PEOPLE = ("ivanova", "sidorov", "petrov", "kuznetsova", "morozov", "orlov", "reg-admin")
ACTIONS = tuple(wf.TRANSITIONS)  # every transition, "edit" and "message" included


@dataclasses.dataclass
class World:
    app: InProcess
    ctx: ConsultContext  # the app's own, without documents (setting up signs many cases)

    def case_in(self, status: CaseStatus) -> int:
        """A new case of the requester to the regional center, brought to ``status``."""
        p = self.app.principal
        ctx = self.ctx
        case = wf.open_case(ctx, p(REQUESTER), question="Узел?", study_uids=[CITY_STUDY],
                            target_institution="regional-center")
        case_id = case.id or 0
        if status is CaseStatus.DRAFT:
            return case_id
        if status is CaseStatus.CANCELLED:
            wf.cancel(ctx, p(REQUESTER), case_id)
            return case_id
        wf.submit(ctx, p(REQUESTER), case_id)
        steps: dict[CaseStatus, list[Callable[[], Any]]] = {
            CaseStatus.SUBMITTED: [],
            CaseStatus.ACCEPTED: [lambda: wf.accept(ctx, p(TARGET), case_id)],
            CaseStatus.RETURNED: [lambda: wf.return_for_information(ctx, p(TARGET), case_id,
                                                                    "prior CT?")],
            CaseStatus.DECLINED: [lambda: wf.decline(ctx, p(TARGET), case_id, "not ours")],
        }
        concluded = [lambda: wf.accept(ctx, p(TARGET), case_id),
                     lambda: wf.conclude(ctx, p(TARGET), case_id, findings="f",
                                         impression="норма")]
        steps[CaseStatus.CONCLUDED] = concluded
        steps[CaseStatus.AMENDED] = [*concluded, lambda: wf.amend(
            ctx, p(TARGET), case_id, findings="f2", impression="норма", reason="typo")]
        steps[CaseStatus.CLOSED] = [*concluded, lambda: wf.close(ctx, p(REQUESTER), case_id)]
        for step in steps[status]:
            step()
        return case_id

    def case(self, case_id: int) -> ConsultCase:
        with Session(self.ctx.engine) as session:
            found = session.get(ConsultCase, case_id)
            assert found is not None
            return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with in_process(tmp_path_factory.mktemp("actions") / "var") as app:
        ctx = dataclasses.replace(consult_context(app.app), documents=None)
        yield World(app, ctx)


def attempt(world: World, username: str, case_id: int, action: str) -> int:
    """The status of ``action`` tried over HTTP with a body it accepts and the current
    version."""
    client = world.app.login(username)
    version = world.case(case_id).version
    path = f"/api/cases/{case_id}"
    if action == "edit":
        return client.patch(path, json={"version": version, "question": "Узел? (уточнено)"}
                            ).status_code
    if action == "message":
        return client.post(path + "/messages", json={"text": "Есть ли прежнее КТ?"}
                           ).status_code
    body: dict[str, Any] = {"version": version, "answer": "нет", "reason": "причина",
                            "request": "прежнее КТ", "subject": "", "findings": "f",
                            "impression": "норма", "recommendations": ""}
    return client.post(f"{path}/{action}", json=body).status_code


def listed(world: World, username: str, case_id: int) -> list[str] | None:
    """``allowed_actions`` of the case for ``username`` (None: the case is not theirs to
    see, 404), the same in the case list as in the case."""
    client = world.app.login(username)
    answer = client.get(f"/api/cases/{case_id}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    actions: list[str] = answer.json()["case"]["allowed_actions"]
    cases = client.get("/api/cases").json()
    for case in cases["inbox"] + cases["requests"]:
        if case["id"] == case_id:
            assert case["allowed_actions"] == actions
    return actions


@pytest.mark.parametrize("status", list(CaseStatus))
def test_allowed_actions_are_what_the_server_accepts(world: World, status: CaseStatus) -> None:
    mismatches: list[str] = []
    for username in PEOPLE:
        case_id = world.case_in(status)
        allowed = listed(world, username, case_id)
        if allowed is None:
            allowed = []
        assert set(allowed) <= set(ACTIONS)
        for action in ACTIONS:
            if action in allowed:
                continue  # tried below, each on a case of its own
            before = world.case(case_id)
            answer = attempt(world, username, case_id, action)
            if answer not in (403, 404, 409):
                mismatches.append(f"{status}/{username}/{action}: not listed, answered "
                                  f"{answer}")
            after = world.case(case_id)
            assert (after.status, after.version) == (before.status, before.version)
        for action in allowed:
            fresh = world.case_in(status)
            answer = attempt(world, username, fresh, action)
            if answer != 200:
                mismatches.append(f"{status}/{username}/{action}: listed, answered {answer}")
    assert mismatches == []


def test_every_action_is_allowed_to_someone_somewhere(world: World) -> None:
    """The matrix above is not vacuous: each action is listed for some person and state."""
    seen: set[str] = set()
    for status in (CaseStatus.DRAFT, CaseStatus.SUBMITTED, CaseStatus.ACCEPTED,
                   CaseStatus.RETURNED, CaseStatus.CONCLUDED):
        case_id = world.case_in(status)
        for username in (REQUESTER, TARGET):
            seen.update(listed(world, username, case_id) or [])
    assert seen == set(ACTIONS)
    draft = world.case_in(CaseStatus.DRAFT)
    assert listed(world, REQUESTER, draft) == ["edit", "submit", "cancel", "message"]
    assert listed(world, TARGET, draft) is None  # a draft is the requester's own
