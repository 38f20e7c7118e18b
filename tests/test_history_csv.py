"""CSV exports of the audit trail and the case history cannot carry a spreadsheet formula."""

from __future__ import annotations

import csv
import io

from consilium.history import audit_search, consult_stats
from consilium.history.csv_export import BOM, neutralise

HOSTILE = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-2+3", "@SUM(A1)",
           "\t=1+1", "\r=1+1", "=cmd|' /C calc'!A0"]


def _cells(text: str) -> list[list[str]]:
    assert text.startswith(BOM)  # Excel reads UTF-8 (Cyrillic) only with it
    return list(csv.reader(io.StringIO(text.removeprefix(BOM))))


def test_formula_cells_are_quoted_in_both_exports() -> None:
    audit_rows = [{c: value for c in audit_search.COLUMNS} for value in HOSTILE]
    for text in (audit_search.to_csv(audit_rows),
                 consult_stats.to_csv([{"question": v, "patient_name": v} for v in HOSTILE])):
        header, *body = _cells(text)
        assert body and all(cell == "'" + value for row, value in zip(body, HOSTILE, strict=True)
                            for cell in row)
        assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in header)


def test_plain_values_and_numbers_are_unchanged() -> None:
    assert neutralise("Иванов^Иван") == "Иванов^Иван"
    assert neutralise("a=b") == "a=b"
    assert neutralise(-1.5) == -1.5 and neutralise(None) is None
    [header, row] = _cells(consult_stats.to_csv([{"month": "2026-11", "median_h": -1.5,
                                                  "cases": 3, "none": None}]))
    assert header == ["month", "median_h", "cases", "none"]
    assert row == ["2026-11", "-1.5", "3", ""]


def test_audit_export_reads_well() -> None:
    """Local time to the second with the zone in the header, names as names, who and what
    first, the identifiers a machine matches on last."""
    row = {"at": "2026-12-03T09:05:09.123456", "action": "view", "outcome": "success",
           "actor": "dev:kuznetsova", "actor_name": "Елена Кузнецова",
           "actor_institution": "regional-center", "source": "127.0.0.1", "channel": "web",
           "patient_id": "P1", "patient_name": "Петров^Николай^Иванович", "study_uid": "1.2.3",
           "detail": "{}"}
    [header, cells] = _cells(audit_search.to_csv([row], "Asia/Yekaterinburg"))
    assert header[:5] == ["at (Asia/Yekaterinburg)", "actor_name", "actor_institution",
                          "action", "outcome"]
    assert header[-1] == "actor" and set(header) - {header[0]} == set(row) - {"at"}
    shown = dict(zip(header, cells, strict=True))
    assert shown["at (Asia/Yekaterinburg)"] == "2026-12-03 14:05:09"  # UTC+5, no microseconds
    assert shown["patient_name"] == "Петров Николай Иванович"
    assert shown["actor_name"] == "Елена Кузнецова"


def test_case_export_reads_well() -> None:
    case = {"version": 3, "question": "Очаг?", "assignee_subject": "dev:kuznetsova",
            "requester_subject": "dev:ivanova", "status": "concluded", "id": 7,
            "patient_name": "Смирнов^Пётр", "created_at": "2026-11-30T19:30:00+00:00",
            "concluded_at": None, "requester_name": "Анна Иванова"}
    [header, cells] = _cells(consult_stats.to_csv([case], "Asia/Yekaterinburg"))
    assert header[0] == "id" and header[-1] == "version"
    assert header.index("requester_subject") > header.index("question")
    shown = dict(zip(header, cells, strict=True))
    assert shown["created_at (Asia/Yekaterinburg)"] == "2026-12-01 00:30:00"  # the next day
    assert shown["concluded_at (Asia/Yekaterinburg)"] == ""
    assert shown["patient_name"] == "Смирнов Пётр"
    figures = [{"month": "2026-11", "to_conclusion_median_h": 0.041666666, "cases": 2}]
    [header, cells] = _cells(consult_stats.to_csv(figures))
    assert cells == ["2026-11", "0.04", "2"]
