"""QIDO-RS searches (PS3.18 10.6) over the index: paged, with fuzzy person-name matching, under
the same matching rules as C-FIND (:mod:`consilium.archive.query`)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    literal,
    or_,
)

from consilium.archive import query as q
from consilium.archive.ingest import search_form
from consilium.archive.models import studies
from consilium.archive.query import (
    ATTRIBUTES,
    Attribute,
    Level,
    Match,
    Query,
    QueryError,
    wildcard_to_like,
)


@dataclass(frozen=True)
class Search:
    """A QIDO-RS search: matching keys, indexed attributes to return, paging and fuzziness.

    Keys above ``level`` match the parents (``/series?PatientID=...``); keys below it are not
    used (the caller warns about them). ``limit`` 0 means no limit.
    """

    level: Level
    keys: dict[str, str]
    returned: tuple[str, ...]
    fuzzy: bool = False
    limit: int = 0
    offset: int = 0


def search(
    engine: Engine,
    request: Search,
    institutions: Sequence[str] | None = None,
    granted: Collection[str] = (),
) -> tuple[list[dict[str, Any]], bool]:
    """Rows (keyword -> indexed value, plus ``_institution``) matching ``request`` in index
    order, and whether more rows exist beyond the page. Visible: studies of ``institutions``
    (None: all) and the ``granted`` study UIDs.

    Values are bound parameters of a statement cached per shape of the request (which keys,
    which kind of matching), so a search costs no SQL construction (measured: 0.6 -> 0.2 ms).
    """
    if institutions is not None and not institutions and not granted:
        return [], False
    returned = tuple(
        k for k in dict.fromkeys(request.returned)
        if k in ATTRIBUTES and ATTRIBUTES[k].level.depth <= request.level.depth
    )
    shapes: list[tuple[str, str]] = []
    params: dict[str, Any] = {}
    for n, (keyword, value) in enumerate(request.keys.items()):
        attr = ATTRIBUTES[keyword]
        if request.fuzzy and attr.match is Match.NAME and value.strip() not in ("", "*"):
            shape = _bind_fuzzy(value, f"p{n}", params)
        else:
            shape = _bind(attr, value, f"p{n}", params)
        shapes.append((keyword, shape))
    if institutions is not None:
        params["institutions"] = list(institutions)
        params["granted"] = list(granted) or [""]
    if request.limit:
        params["limit"] = request.limit + 1
    if request.offset:
        params["offset"] = request.offset
    key = (request.level, returned, tuple(shapes), institutions is not None,
           bool(request.limit), bool(request.offset))
    stmt = _SEARCHES.get(key)
    if stmt is None:
        stmt = _search_statement(*key)
        if len(_SEARCHES) > 512:
            _SEARCHES.clear()
        _SEARCHES[key] = stmt
    with engine.connect() as conn:
        rows = conn.execute(stmt, params).all()
    more = bool(request.limit) and len(rows) > request.limit
    if more:
        rows = rows[: request.limit]
    out = []
    for row in rows:
        values = dict(zip(returned, row[2:], strict=True))
        values["_institution"] = row[1]
        out.append(values)
    return out, more


_SEARCHES: dict[tuple[Any, ...], Select[Any]] = {}


def _bind(attr: Attribute, value: str, name: str, params: dict[str, Any]) -> str:
    """Parameters of one key, matched as :func:`_condition` matches it; returns its shape."""
    value = value.strip()
    if value in ("", "*"):
        return "all"
    if attr.match is Match.NAME:
        folded = search_form(value)
        if q.has_wildcard(folded):
            params[name] = wildcard_to_like(folded)
            return "like"
        params[name] = folded
        return "eq"
    if attr.match is Match.TEXT:
        if q.has_wildcard(value):
            params[name] = wildcard_to_like(value)
            return "like"
        params[name] = value
        return "eq"
    if attr.match is Match.UID:
        uids = q.uid_list(attr, value)
        if len(uids) > 1:
            params[name] = uids
            return "in"
        params[name] = uids[0]
        return "eq"
    if attr.match is Match.INT:
        try:
            params[name] = int(value)
        except ValueError as exc:
            raise QueryError(f"{attr.keyword} must be an integer, got {value!r}") from exc
        return "eq"
    if attr.match is Match.MULTI:
        wanted = [m.strip() for m in value.split("\\") if m.strip()]
        for i, m in enumerate(wanted):
            params[f"{name}_{i}"] = m
            params[f"{name}_{i}a"] = f"{m}\\%"
            params[f"{name}_{i}b"] = f"%\\{m}"
            params[f"{name}_{i}c"] = f"%\\{m}\\%"
        return f"multi{len(wanted)}"
    # dates and times
    if "-" not in value:
        if q.has_wildcard(value):
            params[name] = wildcard_to_like(value)
            return "like"
        params[name] = value
        return "eq"
    low, _, high = value.partition("-")
    low, high = low.strip(), high.strip()
    if not low and not high:
        raise QueryError(f"malformed range {value!r}")
    if low:
        params[f"{name}_lo"] = low
    if high:
        params[f"{name}_hi"] = high + ("~" if len(high) < 8 else "")
    return "range" + ("L" if low else "") + ("H" if high else "")


def _bind_fuzzy(value: str, name: str, params: dict[str, Any]) -> str:
    words = [
        w for w in re.split(r"[\s^=,]+", search_form(value).replace("*", " ").replace("?", " "))
        if w
    ]
    for i, word in enumerate(words):
        params[f"{name}_{i}"] = wildcard_to_like(word)
    return f"fuzzy{len(words)}"


def _bound_condition(attr: Attribute, shape: str, name: str) -> ColumnElement[bool] | None:
    column = attr.search_column if attr.match is Match.NAME else attr.column
    if shape == "all":
        return None
    if shape == "eq":
        return column == bindparam(name)  # type: ignore[no-any-return]
    if shape == "like":
        return column.like(bindparam(name), escape="\\")  # type: ignore[no-any-return]
    if shape == "in":
        return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]
    if shape.startswith("multi"):
        return or_(*(
            or_(column == bindparam(f"{name}_{i}"), column.like(bindparam(f"{name}_{i}a")),
                column.like(bindparam(f"{name}_{i}b")), column.like(bindparam(f"{name}_{i}c")))
            for i in range(int(shape[5:]))
        ))
    if shape.startswith("fuzzy"):
        return and_(*(
            or_(*(column.like(literal(lead) + bindparam(f"{name}_{i}") + literal("%"),
                              escape="\\")
                  for lead in ("", "%^", "% ", "%=", "%-")))
            for i in range(int(shape[5:]))
        ))
    if shape.startswith("range"):
        parts = []
        if "L" in shape:
            parts.append(column >= bindparam(f"{name}_lo"))
        if "H" in shape:
            parts.append(column <= bindparam(f"{name}_hi"))
        return and_(*parts, column != "")
    raise QueryError(f"no matching rule for {attr.keyword}")


def _search_statement(level: Level, returned: tuple[str, ...],
                      shapes: tuple[tuple[str, str], ...], visible: bool, limit: bool,
                      offset: bool) -> Select[Any]:
    stmt = q.statement(Query(level, {}, list(returned)), None)
    for n, (keyword, shape) in enumerate(shapes):
        condition = _bound_condition(ATTRIBUTES[keyword], shape, f"p{n}")
        if condition is not None:
            stmt = stmt.where(condition)
    if visible:
        stmt = stmt.where(or_(
            studies.c.institution_id.in_(bindparam("institutions", expanding=True)),
            studies.c.study_uid.in_(bindparam("granted", expanding=True)),
        ))
    if limit:
        stmt = stmt.limit(bindparam("limit", type_=Integer))
    if offset:
        stmt = stmt.offset(bindparam("offset", type_=Integer))
    return stmt
