"""Heads' case history: filters, and turnaround figures against a hand-computed set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from consilium.consult.models import ConsultCase
from consilium.db import make_engine, migrate
from consilium.history.consult_stats import (
    CaseFilter,
    cases,
    parse_grouping,
    percentile,
    to_csv,
    turnaround,
)
from consilium.identity.policy import Principal

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
CITY_HEAD = Principal("dev:sidorov", "city-hospital", frozenset({"head", "consultant"}),
                      authenticated=True)
REGIONAL_HEAD = Principal("dev:morozov", "regional-center", frozenset({"head", "consultant"}),
                          authenticated=True)


def _case(session: Session, **fields: object) -> None:
    base: dict[str, object] = dict(
        status="concluded", priority="routine", question="q", requester_subject="dev:ivanova",
        requester_institution="city-hospital", target_institution="regional-center",
        target_specialty="radiology", created_at=T0, submitted_at=T0)
    base.update(fields)
    session.add(ConsultCase(**base))  # type: ignore[arg-type]


def test_turnaround_matches_a_hand_computed_set(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    with Session(engine) as session:
        # accepted after 1, 2, 3, 4 h; concluded after 10, 20, 30 h (one still open)
        for accept_h, conclude_h in ((1, 10), (2, 20), (3, 30), (4, None)):
            _case(session, accepted_at=T0 + timedelta(hours=accept_h),
                  concluded_at=T0 + timedelta(hours=conclude_h) if conclude_h else None,
                  status="concluded" if conclude_h else "accepted",
                  due_at=T0 + timedelta(hours=24))
        _case(session, target_specialty="neurology", accepted_at=T0 + timedelta(hours=5),
              concluded_at=T0 + timedelta(hours=6), due_at=T0 + timedelta(hours=72))
        _case(session, requester_institution="regional-center",
              target_institution="other-hospital", submitted_at=T0)  # not ours: invisible
        session.commit()
    rows = cases(engine, CITY_HEAD, CaseFilter())
    assert len(rows) == 5
    figures = turnaround(rows, now=T0 + timedelta(hours=48))
    radiology = next(f for f in figures if f["specialty"] == "radiology")
    assert radiology["month"] == "2026-11" and radiology["cases"] == 4
    assert radiology["to_acceptance_median_h"] == 2.0  # nearest rank of 1, 2, 3, 4
    assert radiology["to_acceptance_p90_h"] == 4.0
    assert radiology["to_conclusion_median_h"] == 20.0
    assert radiology["to_conclusion_p90_h"] == 30.0
    assert radiology["overdue"] == 2  # concluded at 30 h > due 24 h, and the open one at 48 h
    neurology = next(f for f in figures if f["specialty"] == "neurology")
    assert (neurology["cases"], neurology["overdue"]) == (1, 0)
    assert to_csv(figures).splitlines()[0].startswith("\ufefftarget_institution,specialty,month")
    # the whole month across specialties: medians of all five cases, not of the groups
    [month] = turnaround(rows, now=T0 + timedelta(hours=48), group_by=parse_grouping("month"))
    assert set(month) - set(radiology) == set() and "specialty" not in month
    assert (month["month"], month["cases"], month["concluded"]) == ("2026-11", 5, 4)
    assert month["to_conclusion_median_h"] == 10.0  # nearest rank of 6, 10, 20, 30
    assert month["to_acceptance_p90_h"] == 5.0  # of 1, 2, 3, 4, 5
    assert parse_grouping("specialty,institution") == ("institution", "specialty")
    for bad in ("week", ","):
        with pytest.raises(ValueError):
            parse_grouping(bad)
    assert [c.target_specialty for c in cases(engine, CITY_HEAD, CaseFilter(
        specialty="neurology"))] == ["neurology"]
    assert cases(engine, CITY_HEAD, CaseFilter(status="accepted"))[0] \
        .accepted_at is not None


def test_a_draft_is_only_in_its_own_institutions_history(tmp_path: Path) -> None:
    """The target institution's head sees a case once it is sent, as ``/api/cases/{id}`` does;
    a draft (question, clinical information, patient) stays with the requesting institution."""
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    with Session(engine) as session:
        _case(session, status="draft", submitted_at=None, question="draft question",
              patient_name="Иванов^Иван")
        _case(session, status="submitted", question="sent question")
        _case(session, status="draft", submitted_at=None, requester_institution="regional-center",
              target_institution="city-hospital", question="their draft")
        session.commit()
    assert sorted(c.question for c in cases(engine, REGIONAL_HEAD, CaseFilter())) == [
        "sent question", "their draft"]
    assert sorted(c.question for c in cases(engine, CITY_HEAD, CaseFilter())) == [
        "draft question", "sent question"]
    assert [c.question for c in cases(engine, REGIONAL_HEAD, CaseFilter(status="draft"))] == [
        "their draft"]
    nobody = Principal("dev:x", None, frozenset({"head"}), authenticated=True)
    assert cases(engine, nobody, CaseFilter()) == []


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([float(v) for v in range(1, 11)], 0.9) == 9.0
