"""The session's state in process: the sequencer's rules, snapshots, and a feed taking changes
in seq order whatever order they arrive in (on a real SQLite database and a real Socket.IO
server object; the end-to-end tests are tests/test_live_session.py)."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio
from sqlalchemy import Engine
from sqlmodel import Session

from consilium.archive.access import Reader
from consilium.audit import AuditTrail
from consilium.consult.models import ConsultCase
from consilium.db import make_engine, migrate
from consilium.identity.policy import Principal
from consilium.live import feed as feed_module
from consilium.live.events import ChangeKind as K
from consilium.live.feed import Participant
from consilium.live.hub import LiveHub
from consilium.live.models import ConsiliumSession
from consilium.live.sequencer import (
    SNAPSHOT_EVERY,
    Draft,
    append,
    load_changes,
    load_state,
    replay,
)
from consilium.live.sessions import LiveContext
from consilium.live.state import apply, clone, empty_state

SID = "session-under-test"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'live.db'}")
    migrate(engine)
    stamp = datetime.now(UTC)
    with Session(engine) as db:
        case = ConsultCase(status="submitted", priority="routine", question="q",
                           requester_subject="chair", requester_institution="a",
                           target_institution="b", created_at=stamp)
        db.add(case)
        db.commit()
        db.refresh(case)
        db.add(ConsiliumSession(id=SID, case_id=case.id or 0, status="scheduled",
                                scheduled_at=stamp, chair_subject="chair", created_by="chair",
                                created_at=stamp))
        db.commit()
    return engine


def write(engine: Engine, *drafts: Draft) -> list[Any]:
    with engine.begin() as db:
        return [append(db, d, "p1") for d in drafts]


def d(kind: K, actor: str = "chair", **payload: Any) -> Draft:
    return Draft(SID, kind, actor, payload)


def opened(engine: Engine) -> None:
    write(engine, d(K.SESSION_SCHEDULED, case_id=1, title="t",
                    chair={"subject": "chair", "name": "Chair", "institution": "a"}),
          d(K.SESSION_OPENED),
          d(K.MEMBER_JOINED, "chair", subject="chair", name="Chair", connection="c-chair"),
          d(K.MEMBER_JOINED, "bob", subject="bob", name="Bob", connection="c-bob"))


def test_the_rules_refuse_before_numbering(engine: Engine) -> None:
    assert write(engine, d(K.CHAT_MESSAGE, text="too early")) == [None]  # scheduled
    opened(engine)
    view = {"state": {"layout": "1x1"}}
    results = write(engine,
                    d(K.VIEW_STACK, "bob", **view),  # not the presenter
                    d(K.VIEW_STACK, "chair", **view),
                    d(K.CONTROL_GRANTED, "bob", subject="bob"),  # neither presenter nor chair
                    d(K.CONTROL_GRANTED, "chair", subject="bob"),
                    d(K.VIEW_STACK, "chair", **view),  # no longer the presenter
                    d(K.VIEW_STACK, "bob", **view),
                    d(K.MEMBER_LEFT, "bob", subject="bob", connection="nope"),  # not there
                    d(K.MEMBER_LEFT, "bob", subject="bob", connection="c-bob"),
                    d(K.MEMBER_LEFT, "bob", subject="bob", connection="c-bob"),  # twice
                    d(K.SESSION_ENDED, "bob"),  # not the chair
                    d(K.SESSION_ENDED),
                    d(K.CHAT_MESSAGE, text="too late"),
                    d(K.SESSION_ENDED))
    assert [r.seq if r else None for r in results] == [
        None, 5, None, 6, None, 7, None, 8, None, None, 9, None, None]
    state, seq = load_state(engine, SID)
    assert (seq, state["status"], state["presenter"]) == (9, "ended", "bob")
    assert all(not m["online"] for m in state["members"].values())


def test_snapshots_are_the_fold_of_the_record(engine: Engine) -> None:
    opened(engine)
    rng = random.Random(7)
    for i in range(3 * SNAPSHOT_EVERY + 17):
        kind = rng.choice([K.CHAT_MESSAGE, K.VIEW_STACK, K.POINTER, K.HAND_RAISED,
                           K.HAND_LOWERED, K.CONTROL_REQUESTED])
        payload: dict[str, Any] = {
            K.CHAT_MESSAGE: {"text": f"m{i}", "name": "Chair"},
            K.VIEW_STACK: {"state": {"index": i}, "final": False},
            K.POINTER: {"visible": i % 5 != 0, "series_uid": "1.2", "x": i, "y": -i},
            K.HAND_RAISED: {"subject": "bob"}, K.HAND_LOWERED: {"subject": "bob"},
            K.CONTROL_REQUESTED: {"subject": "bob"}}[kind]
        assert write(engine, d(kind, "chair", **payload))[0] is not None
    with Session(engine) as db:
        row = db.get(ConsiliumSession, SID)
        assert row is not None and row.snapshot_seq == 3 * SNAPSHOT_EVERY
        assert row.last_seq == 3 * SNAPSHOT_EVERY + 17 + 4
    record = load_changes(engine, SID, after=0)
    full = replay(record, SID)
    assert load_state(engine, SID) == (full, full["seq"])
    # zulip's verify_action: a snapshot at any seq plus the changes after it is the state
    for cut in (0, 1, 4, SNAPSHOT_EVERY, 2 * SNAPSHOT_EVERY + 5, len(record)):
        state = replay(record[:cut], SID)
        for change in record[cut:]:
            apply(state, change)
        assert state == full
    # a change at or below the state's seq changes nothing (a duplicate from the bus)
    again = clone(full)
    for change in record[-10:]:
        apply(again, change)
    assert again == full
    assert len(full["chat"]) == min(500, sum(c["kind"] == "chat.message" for c in record))
    assert json.loads(json.dumps(full)) == full  # one JSON document


def test_a_feed_takes_changes_in_seq_order_and_fills_gaps_from_the_database(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    opened(engine)
    monkeypatch.setattr(feed_module, "GAP_WAIT", 0.05)

    async def scenario() -> None:
        ctx = LiveContext(engine, AuditTrail(engine), access=None,  # type: ignore[arg-type]
                          process_id="p1")
        hub = LiveHub(ctx, socketio.AsyncServer(async_mode="asgi"))
        feed = await hub.feed(SID)
        assert feed.seq == 4
        written = write(engine, *(d(K.CHAT_MESSAGE, text=f"t{i}") for i in range(6)))
        wires = [c.wire() for c in written]  # seq 5..10
        for i in (2, 0, 5, 0, 1):  # 7, 5, 10, 5 again, 6: 8 and 9 never come by the bus
            feed.receive(wires[i])
        assert [c["seq"] for c in feed.recent] == [5, 6, 7]
        for _ in range(100):
            if feed.seq == 10:
                break
            await asyncio.sleep(0.02)
        assert [c["seq"] for c in feed.recent] == [5, 6, 7, 8, 9, 10]
        assert feed.state == load_state(engine, SID)[0]
        assert feed.changes_after(6) == wires[2:]
        await feed.close()

    asyncio.run(scenario())


def test_the_empty_state_is_json(engine: Engine) -> None:
    state = empty_state(SID)
    assert json.loads(json.dumps(state)) == state and state["seq"] == 0


def test_an_invitee_whose_invitation_ends_during_the_session_is_let_out(engine: Engine) -> None:
    opened(engine)

    async def scenario() -> None:
        ctx = LiveContext(engine, AuditTrail(engine), access=None,  # type: ignore[arg-type]
                          process_id="p1")
        hub = LiveHub(ctx, socketio.AsyncServer(async_mode="asgi"))
        await hub.start()
        feed = await hub.feed(SID)
        expelled: list[str] = []
        hub.on_expel = lambda p: expelled.append(p.subject)
        reader = Reader.of(Principal("bob", "b", authenticated=True))
        past, future = datetime.now(UTC) - timedelta(seconds=1), datetime.now(UTC) + timedelta(
            hours=1)
        feed.participants["sid-bob"] = Participant("sid-bob", SID, "bob", "Bob", "b", "member",
                                                   "c-bob", reader, until=past)
        feed.participants["sid-chair"] = Participant("sid-chair", SID, "chair", "Chair", "a",
                                                     "chair", "c-chair", reader, until=future)
        hub._expire()
        for _ in range(200):
            if feed.seq == 5:
                break
            await asyncio.sleep(0.02)
        assert expelled == ["bob"] and list(feed.participants) == ["sid-chair"]
        left = feed.recent[-1]
        assert (left["kind"], left["payload"]["reason"]) == ("member.left", "expired")
        assert feed.state is not None and not feed.state["members"]["bob"]["online"]
        await hub.close()

    asyncio.run(scenario())
