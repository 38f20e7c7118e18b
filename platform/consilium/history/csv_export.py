"""CSV exports that are safe to open in a spreadsheet and read well in it.

A cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets skip before looking) is read as a formula by Excel and LibreOffice: a patient name or
case question typed as ``=HYPERLINK(...)`` would run in the head's spreadsheet. Such text cells
get a leading apostrophe (OWASP's advice), which spreadsheets show as text. Numbers are written as
numbers: a negative figure is data, not a formula.

Readable too: the text starts with a byte order mark (without it Excel takes UTF-8 for the
local code page and garbles Cyrillic), instants are written in the region's time zone to the
second (``2026-12-03 14:05:09``, the zone named in the column's header), DICOM person names as
names (``Петров Николай``), and the columns a person reads first come first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` as it may go into a cell: text that a spreadsheet would evaluate is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


BOM = "\ufeff"


def local_time(value: Any, zone: str) -> Any:
    """An instant (a datetime, or ISO 8601 text; naive means UTC) as the zone's wall-clock time
    to the second; anything else as it is."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return value
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def person_name(value: Any) -> Any:
    """A DICOM person name (``Петров^Николай^Иванович``, groups by ``=``) as a name."""
    if not isinstance(value, str) or "^" not in value:
        return value
    group = next((g for g in value.split("=") if g.replace("^", "").strip()), "")
    family, given, middle, prefix, suffix = (group.split("^") + [""] * 5)[:5]
    return " ".join(p.strip() for p in (prefix, family, given, middle, suffix) if p.strip())


def ordered(first: Sequence[str], present: Iterable[str]) -> list[str]:
    """The columns of ``first`` that are present, in that order, then the others as found."""
    found = list(dict.fromkeys(present))
    return [c for c in first if c in found] + [c for c in found if c not in first]


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, zone: str = "UTC",
           times: Collection[str] = (), names: Collection[str] = ()) -> str:
    """``rows`` as CSV with a header of ``columns`` (in that order), every cell neutralised;
    the ``times`` columns as wall-clock time in ``zone`` (named in their header), the ``names``
    columns as person names. Starts with a byte order mark."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer)
    writer.writerow([neutralise(f"{c} ({zone})" if c in times else c) for c in columns])
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c in times:
                value = local_time(value, zone)
            elif c in names:
                value = person_name(value)
            cells.append(neutralise(value))
        writer.writerow(cells)
    return buffer.getvalue()
