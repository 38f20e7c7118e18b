"""Case history for heads of department: filtered case lists and turnaround figures.

A head sees exactly the cases the access policy lets them see (``may_see_case``): every case their
institution sent, drafts included, and the cases it received once they were sent (a draft is its
requester's own: its question and patient are nobody else's business). Turnaround is measured
from submission to acceptance and from submission to the (first) signed conclusion, in hours;
the median and 90th percentile are computed here (nearest-rank), not in SQL, so that every
database gives the same figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, or_
from sqlmodel import Session, col, select

from consilium.consult.cases import parties
from consilium.consult.models import OPEN_STATUSES, CaseStatus, ConsultCase
from consilium.history import csv_export
from consilium.identity.policy import Principal, may_see_case


@dataclass(frozen=True)
class CaseFilter:
    status: str = ""
    priority: str = ""
    other_institution: str = ""
    specialty: str = ""
    person: str = ""  # requester or assignee subject
    since: datetime | None = None
    until: datetime | None = None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cases(engine: Engine, viewer: Principal, flt: CaseFilter) -> list[ConsultCase]:
    """The cases ``viewer`` may see that match ``flt``, newest first.

    The SQL narrows to the viewer's institution's sent cases and its received, submitted ones;
    the policy then decides each row, so that the history never shows a case that
    ``/api/cases/{id}`` would answer 404 for."""
    institution = viewer.institution_id
    if not institution:
        return []
    stmt = select(ConsultCase).where(or_(
        col(ConsultCase.requester_institution) == institution,
        and_(col(ConsultCase.target_institution) == institution,
             col(ConsultCase.submitted_at).is_not(None)),
    ))
    if flt.status:
        stmt = stmt.where(ConsultCase.status == flt.status)
    if flt.priority:
        stmt = stmt.where(ConsultCase.priority == flt.priority)
    if flt.other_institution:
        stmt = stmt.where(or_(col(ConsultCase.requester_institution) == flt.other_institution,
                              col(ConsultCase.target_institution) == flt.other_institution))
    if flt.specialty:
        stmt = stmt.where(ConsultCase.target_specialty == flt.specialty)
    if flt.person:
        stmt = stmt.where(or_(col(ConsultCase.requester_subject) == flt.person,
                              col(ConsultCase.assignee_subject) == flt.person))
    if flt.since is not None:
        stmt = stmt.where(col(ConsultCase.created_at) >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(col(ConsultCase.created_at) <= flt.until)
    with Session(engine) as session:
        found = session.exec(stmt.order_by(col(ConsultCase.created_at).desc()))
        return [case for case in found if may_see_case(viewer, parties(case))]


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the median is fraction 0.5)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def is_overdue(case: ConsultCase, now: datetime) -> bool:
    due = _aware(case.due_at)
    if due is None:
        return False
    concluded = _aware(case.concluded_at)
    if CaseStatus(case.status) in OPEN_STATUSES:
        return now > due
    return concluded is not None and concluded > due


GROUPINGS = ("institution", "specialty", "month")


def parse_grouping(text: str | None) -> tuple[str, ...]:
    """``group=month`` or ``group=institution,month`` ...; default: all three."""
    if not text:
        return GROUPINGS
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [g for g in chosen if g not in GROUPINGS]
    if unknown or not chosen:
        raise ValueError(f"group is a list of {', '.join(GROUPINGS)}")
    return tuple(g for g in GROUPINGS if g in chosen)


def turnaround(rows: list[ConsultCase], now: datetime | None = None,
               group_by: tuple[str, ...] = GROUPINGS) -> list[dict[str, Any]]:
    """Figures per group of (target institution, specialty, month of submission), or of the
    chosen subset of these (``("month",)``: the whole range per month, exact medians)."""
    now = now or datetime.now(UTC)
    groups: dict[tuple[str, str, str], list[ConsultCase]] = defaultdict(list)
    for case in rows:
        submitted = _aware(case.submitted_at)
        if submitted is None:
            continue
        groups[(case.target_institution if "institution" in group_by else "",
                case.target_specialty if "specialty" in group_by else "",
                submitted.strftime("%Y-%m") if "month" in group_by else "")].append(case)
    figures = []
    for (institution, specialty, month), members in sorted(groups.items()):
        def hours(end_of: str, members: list[ConsultCase] = members) -> list[float]:
            out = []
            for c in members:
                start, end = _aware(c.submitted_at), _aware(getattr(c, end_of))
                if start is not None and end is not None:
                    out.append((end - start).total_seconds() / 3600)
            return out

        accept, conclude = hours("accepted_at"), hours("concluded_at")
        keys = {"target_institution": institution, "specialty": specialty, "month": month}
        figures.append({
            **{k: v for k, v, g in zip(keys, keys.values(), GROUPINGS, strict=True)
               if g in group_by},
            "cases": len(members),
            "accepted": len(accept), "concluded": len(conclude),
            "to_acceptance_median_h": percentile(accept, 0.5),
            "to_acceptance_p90_h": percentile(accept, 0.9),
            "to_conclusion_median_h": percentile(conclude, 0.5),
            "to_conclusion_p90_h": percentile(conclude, 0.9),
            "overdue": sum(1 for c in members if is_overdue(c, now)),
        })
    return figures


# the cases export: the case and its state, the patient, who asked whom, when, what; the users'
# ids (subjects) and the version last
CASE_COLUMNS = ("id", "status", "priority", "patient_name", "patient_id", "requester_name",
                "requester_institution", "target_institution", "target_specialty",
                "assignee_name", "created_at", "submitted_at", "accepted_at", "concluded_at",
                "closed_at", "due_at", "question", "clinical_info", "requester_subject",
                "target_subject", "assignee_subject", "version")
CASE_TIMES = ("created_at", "submitted_at", "accepted_at", "concluded_at", "closed_at", "due_at")


def to_csv(rows: list[dict[str, Any]], zone: str = "UTC") -> str:
    """Cases or turnaround figures as CSV (the columns of the rows, cases' in a reading order);
    hours rounded to the minute's worth (two decimals)."""
    if not rows:
        return csv_export.BOM
    columns = csv_export.ordered(CASE_COLUMNS, (k for r in rows for k in r))
    rounded = [{k: round(v, 2) if k.endswith("_h") and isinstance(v, float) else v
                for k, v in r.items()} for r in rows]
    return csv_export.to_csv(rounded, columns, zone=zone, times=CASE_TIMES,
                             names=("patient_name",))
