"""CSV exports of the audit trail and the case history cannot carry a spreadsheet formula."""

from __future__ import annotations

import csv
import io

from consilium.history import audit_search, consult_stats
from consilium.history.csv_export import neutralise

HOSTILE = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-2+3", "@SUM(A1)",
           "\t=1+1", "\r=1+1", "=cmd|' /C calc'!A0"]


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


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
