"""Mark changes in the sequencer and the fold (in process, a real SQLite database): a mark's
change is numbered only when the mark is new or the actor's own, the case's table holds what
the state holds, strokes in progress come and go with their mark, and a snapshot plus the
changes after it is the state."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Engine

from consilium.consult.annotations import list_marks
from consilium.live.events import ChangeKind as K
from consilium.live.sequencer import load_changes, load_state, replay
from consilium.live.state import apply, empty_state
from tests.test_live_state import SID, d, engine, opened, write

__all__ = ["engine"]


def mark(mark_id: str, x: float, author: str = "bob") -> dict[str, Any]:
    return {"id": mark_id, "kind": "length", "series_uid": "1.2.3",
            "frame_of_reference_uid": "1.2.4", "points3d": [[x, 0.0, 0.0], [x + 1, 0.0, 0.0]],
            "author_subject": author}


def ids(state: dict[str, Any]) -> list[str]:
    return [m["id"] for m in state["annotations"]]


def test_only_new_marks_or_the_author_s_own_get_a_seq(engine: Engine) -> None:
    opened(engine)
    results = write(engine,
                    d(K.MARK_PUT, "bob", mark=mark("m1", 1)),
                    d(K.MARK_PUT, "chair", mark=mark("m1", 2, "chair")),  # bob's
                    d(K.MARK_DELETED, "chair", id="m1"),  # bob's
                    d(K.MARK_DELETED, "bob", id="nothing"),  # no such mark
                    d(K.MARK_PUT, "bob", mark=mark("m1", 3)),  # bob moves it
                    d(K.MARK_PUT, "chair", mark=mark("m2", 4, "chair")),
                    d(K.MARK_DELETED, "bob", id="m1"),
                    d(K.MARK_DELETED, "bob", id="m1"))  # twice
    assert [r.seq if r else None for r in results] == [5, None, None, None, 6, 7, 8, None]
    state, _ = load_state(engine, SID)
    assert ids(state) == ["m2"]
    assert [m.id for m in list_marks(engine, 1)] == ["m2"]
    # a put after the author's delete brings it back (the author's undo), nobody else's
    assert write(engine, d(K.MARK_PUT, "chair", mark=mark("m1", 5, "chair")))[0] is None
    assert write(engine, d(K.MARK_PUT, "bob", mark=mark("m1", 6)))[0] is not None
    assert {m.id: m.points3d[0][0] for m in list_marks(engine, 1)} == {"m2": 4.0, "m1": 6.0}


def test_strokes_in_progress_end_with_their_mark_or_their_author(engine: Engine) -> None:
    opened(engine)
    write(engine, d(K.MARK_DRAWING, "bob", mark=mark("s1", 1)),
          d(K.MARK_DRAWING, "chair", mark=mark("s2", 1, "chair")))
    state, _ = load_state(engine, SID)
    assert set(state["drawing"]) == {"bob", "chair"}
    write(engine, d(K.MARK_PUT, "bob", mark=mark("s1", 2)),
          d(K.MARK_DRAWING, "chair", mark=None))
    state, _ = load_state(engine, SID)
    assert state["drawing"] == {} and ids(state) == ["s1"]
    write(engine, d(K.MARK_DRAWING, "bob", mark=mark("s3", 1)),
          d(K.MEMBER_LEFT, "bob", subject="bob", connection="c-bob"))
    state, _ = load_state(engine, SID)
    assert state["drawing"] == {}  # bob went offline
    # a snapshot written before "drawing" existed folds these kinds too
    old = empty_state("x")
    del old["drawing"]
    apply(old, {"seq": 1, "at": "t", "actor": "a", "kind": "mark.drawing",
                "payload": {"mark": mark("z", 1)}})
    assert old["drawing"]["a"]["id"] == "z"


def test_a_snapshot_and_the_changes_after_it_are_the_marks(engine: Engine) -> None:
    opened(engine)
    rng = random.Random(13)
    for i in range(400):
        who = rng.choice(["bob", "chair"])
        mark_id = f"{who}-{rng.randrange(12)}"
        kind = rng.choice([K.MARK_PUT, K.MARK_PUT, K.MARK_DELETED, K.MARK_DRAWING])
        payload = ({"id": mark_id} if kind is K.MARK_DELETED else
                   {"mark": mark(mark_id, float(i), who)})
        write(engine, d(kind, who, **payload))
    record = load_changes(engine, SID, after=0)
    full = replay(record, SID)
    assert load_state(engine, SID) == (full, full["seq"])
    for cut in (0, 7, 150, len(record) - 3):
        state = replay(record[:cut], SID)
        for change in record[cut:]:
            apply(state, change)
        assert state == full
    kept = {m.id: [list(p) for p in m.points3d] for m in list_marks(engine, 1)}
    assert kept == {m["id"]: m["points3d"] for m in full["annotations"]}
