"""Query/Retrieve matching over the index (PS3.4 C.2.2.2): C-FIND, and the matching rules that
QIDO-RS (:mod:`.search`) shares.

Matching supported on every indexed attribute: single value, universal (empty), wildcard
(``*`` and ``?``), list of UIDs (backslash-separated) and ranges for dates and times
(``a-b``, ``-b``, ``a-``). Person names match case-insensitively in any script (the index keeps
a case-folded copy), which is what users expect of ``иванов*``; other strings match exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute

from consilium.archive.ingest import search_form
from consilium.archive.models import instances, patients, series_table, studies


class Level(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        return _DEPTH[self]


_DEPTH = {level: n for n, level in enumerate(Level)}  # Level.depth runs in every query


class Match(StrEnum):
    TEXT = "text"  # exact or wildcard
    NAME = "name"  # case-insensitive exact or wildcard, against a *_search column
    UID = "uid"  # exact or list
    DATE = "date"  # exact or range
    INT = "int"  # exact
    MULTI = "multi"  # ModalitiesInStudy: any of the listed values present


@dataclass(frozen=True)
class Attribute:
    keyword: str
    level: Level
    column: Any  # the column returned
    match: Match
    search_column: Any = None  # for NAME: the case-folded column


ATTRIBUTES: dict[str, Attribute] = {
    a.keyword: a
    for a in (
        Attribute(
            "PatientName",
            Level.PATIENT,
            patients.c.patient_name,
            Match.NAME,
            patients.c.patient_name_search,
        ),
        Attribute("PatientID", Level.PATIENT, patients.c.patient_id, Match.TEXT),
        Attribute("IssuerOfPatientID", Level.PATIENT, patients.c.issuer, Match.TEXT),
        Attribute("PatientBirthDate", Level.PATIENT, patients.c.birth_date, Match.DATE),
        Attribute("PatientSex", Level.PATIENT, patients.c.sex, Match.TEXT),
        Attribute("StudyInstanceUID", Level.STUDY, studies.c.study_uid, Match.UID),
        Attribute("StudyDate", Level.STUDY, studies.c.study_date, Match.DATE),
        Attribute("StudyTime", Level.STUDY, studies.c.study_time, Match.DATE),
        Attribute("AccessionNumber", Level.STUDY, studies.c.accession_number, Match.TEXT),
        Attribute("StudyID", Level.STUDY, studies.c.study_id, Match.TEXT),
        Attribute("StudyDescription", Level.STUDY, studies.c.description, Match.TEXT),
        Attribute(
            "ReferringPhysicianName",
            Level.STUDY,
            studies.c.referring_physician,
            Match.NAME,
            studies.c.referring_physician_search,
        ),
        Attribute("ModalitiesInStudy", Level.STUDY, studies.c.modalities, Match.MULTI),
        Attribute("NumberOfStudyRelatedSeries", Level.STUDY, studies.c.num_series, Match.INT),
        Attribute("NumberOfStudyRelatedInstances", Level.STUDY, studies.c.num_instances, Match.INT),
        Attribute("SeriesInstanceUID", Level.SERIES, series_table.c.series_uid, Match.UID),
        Attribute("Modality", Level.SERIES, series_table.c.modality, Match.TEXT),
        Attribute("SeriesNumber", Level.SERIES, series_table.c.series_number, Match.INT),
        Attribute("SeriesDescription", Level.SERIES, series_table.c.description, Match.TEXT),
        Attribute("BodyPartExamined", Level.SERIES, series_table.c.body_part, Match.TEXT),
        Attribute("SeriesDate", Level.SERIES, series_table.c.series_date, Match.DATE),
        Attribute("SeriesTime", Level.SERIES, series_table.c.series_time, Match.DATE),
        Attribute(
            "NumberOfSeriesRelatedInstances", Level.SERIES, series_table.c.num_instances, Match.INT
        ),
        Attribute("SOPInstanceUID", Level.IMAGE, instances.c.sop_uid, Match.UID),
        Attribute("SOPClassUID", Level.IMAGE, instances.c.sop_class_uid, Match.UID),
        Attribute("InstanceNumber", Level.IMAGE, instances.c.instance_number, Match.INT),
        Attribute("NumberOfFrames", Level.IMAGE, instances.c.number_of_frames, Match.INT),
        Attribute("Rows", Level.IMAGE, instances.c.rows, Match.INT),
        Attribute("Columns", Level.IMAGE, instances.c.columns, Match.INT),
    )
}

# computed at the patient level
PATIENT_COUNTS = (
    "NumberOfPatientRelatedStudies",
    "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances",
)


class QueryError(ValueError):
    """The identifier cannot be matched (unknown level, malformed range...)."""


def wildcard_to_like(value: str) -> str:
    """DICOM ``*``/``?`` to SQL LIKE with ``\\`` as the escape character."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def uid_list(attr: Attribute, value: str) -> list[str]:
    """A UID or a list of UIDs (PS3.4 C.2.2.2.2); a list of nothing but separators is malformed,
    not universal."""
    uids = [u.strip() for u in value.split("\\") if u.strip()]
    if not uids:
        raise QueryError(f"{attr.keyword}: an empty list of UIDs ({value!r})")
    return uids


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def key_condition(attr: Attribute, value: str) -> ColumnElement[bool] | None:
    value = value.strip()
    if value == "" or value == "*":
        return None  # universal matching
    column = attr.column
    if attr.match is Match.NAME:
        folded = search_form(value)
        if has_wildcard(folded):
            return _like(attr.search_column, folded)
        return attr.search_column == folded  # type: ignore[no-any-return]
    if attr.match is Match.TEXT:
        if has_wildcard(value):
            return _like(column, value)
        return column == value  # type: ignore[no-any-return]
    if attr.match is Match.UID:
        uids = uid_list(attr, value)
        return column.in_(uids) if len(uids) > 1 else column == uids[0]  # type: ignore[no-any-return]
    if attr.match is Match.DATE:
        return _range(column, value)
    if attr.match is Match.INT:
        try:
            return column == int(value)  # type: ignore[no-any-return]
        except ValueError as exc:
            raise QueryError(f"{attr.keyword} must be an integer, got {value!r}") from exc
    if attr.match is Match.MULTI:
        wanted = [m.strip() for m in value.split("\\") if m.strip()]
        clauses = [
            or_(
                column == m,
                column.like(f"{m}\\%"),
                column.like(f"%\\{m}"),
                column.like(f"%\\{m}\\%"),
            )
            for m in wanted
        ]
        return or_(*clauses)
    raise QueryError(f"no matching rule for {attr.keyword}")


def _like(column: Any, pattern: str) -> ColumnElement[bool]:
    """LIKE, plus an index-friendly range when the pattern is a plain prefix (``smith*``):
    SQLite cannot use an index for LIKE with a case-sensitive column otherwise."""
    like = column.like(wildcard_to_like(pattern), escape="\\")
    prefix = pattern[:-1]
    if pattern.endswith("*") and prefix and not has_wildcard(prefix):
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return and_(column >= prefix, column < upper, like)
    return like  # type: ignore[no-any-return]


def _range(column: InstrumentedAttribute[Any], value: str) -> ColumnElement[bool]:
    if "-" not in value:
        if has_wildcard(value):
            return _like(column, value)
        return column == value
    low, _, high = value.partition("-")
    low, high = low.strip(), high.strip()
    # times may carry fractions; DA/TM compare correctly as text when equally long
    if low and high:
        return and_(column >= low, column <= high + ("~" if len(high) < 8 else ""), column != "")
    if low:
        return and_(column >= low, column != "")
    if high:
        return and_(column <= high + ("~" if len(high) < 8 else ""), column != "")
    raise QueryError(f"malformed range {value!r}")


@dataclass(frozen=True)
class Query:
    level: Level
    keys: dict[str, str]  # keyword -> matching value ("" for return keys)
    returned: list[str]  # keywords to return, in the order asked


def parse_identifier(identifier: Dataset, root: str = "study") -> Query:
    """Read the level and keys of a C-FIND identifier (text already decoded by pydicom)."""
    level_text = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    try:
        level = Level(level_text)
    except ValueError as exc:
        raise QueryError(f"unknown Query/Retrieve Level {level_text!r}") from exc
    if root == "study" and level is Level.PATIENT:
        raise QueryError("PATIENT level is not part of the Study Root information model")
    keys: dict[str, str] = {}
    returned: list[str] = []
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        try:
            value = element.value
        except (ValueError, TypeError, LookupError) as exc:
            raise QueryError(f"unreadable value of {keyword}: {exc}") from exc
        if element.VR == "SQ":
            continue  # sequence matching is not supported; such keys are ignored
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        else:
            text = "" if value is None else str(value)
        returned.append(keyword)
        if keyword in ATTRIBUTES and ATTRIBUTES[keyword].level.depth <= level.depth:
            keys[keyword] = text
    return Query(level, keys, returned)


def statement(query: Query, institutions: Sequence[str] | None) -> Select[Any]:
    level = query.level
    columns: list[Any] = [patients.c.id, patients.c.institution_id]
    wanted = [
        ATTRIBUTES[k]
        for k in query.returned
        if k in ATTRIBUTES and ATTRIBUTES[k].level.depth <= level.depth
    ]
    columns += [a.column for a in wanted]
    stmt = select(*columns).select_from(patients)
    if level.depth >= Level.STUDY.depth:
        stmt = stmt.join(studies, studies.c.patient_pk == patients.c.id)
    if level.depth >= Level.SERIES.depth:
        stmt = stmt.join(series_table, series_table.c.study_pk == studies.c.id)
    if level.depth >= Level.IMAGE.depth:
        stmt = stmt.join(instances, instances.c.series_pk == series_table.c.id)
    for keyword, value in query.keys.items():
        condition = key_condition(ATTRIBUTES[keyword], value)
        if condition is not None:
            stmt = stmt.where(condition)
    if institutions is not None:
        owner = patients.c.institution_id if level is Level.PATIENT else studies.c.institution_id
        stmt = stmt.where(owner.in_(list(institutions)))
    if level is Level.PATIENT:
        stmt = stmt.where(
            select(studies.c.id).where(studies.c.patient_pk == patients.c.id).exists()
        )
    order = {
        Level.PATIENT: patients.c.id,
        Level.STUDY: studies.c.id,
        Level.SERIES: series_table.c.id,
        Level.IMAGE: instances.c.id,
    }[level]
    return stmt.order_by(order)


def _patient_counts(engine: Engine, patient_pk: int) -> tuple[int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            select(
                func.count(studies.c.id),
                func.coalesce(func.sum(studies.c.num_series), 0),
                func.coalesce(func.sum(studies.c.num_instances), 0),
            ).where(studies.c.patient_pk == patient_pk)
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def find(
    engine: Engine, query: Query, institutions: Sequence[str] | None = None, limit: int = 0
) -> Iterator[Dataset]:
    """Matching identifiers for ``query``; ``institutions`` limits ownership (None: all)."""
    for values, patient_pk in _matches(engine, query, institutions, limit):
        yield _identifier(engine, query, values, patient_pk)


def _matches(
    engine: Engine, query: Query, institutions: Sequence[str] | None, limit: int = 0
) -> Iterator[tuple[dict[str, Any], int]]:
    stmt = statement(query, institutions)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    wanted = [
        k
        for k in query.returned
        if k in ATTRIBUTES and ATTRIBUTES[k].level.depth <= query.level.depth
    ]
    for row in rows:
        yield dict(zip(wanted, row[2:], strict=True)), int(row[0])


def find_encoded(
    engine: Engine, query: Query, institutions: Sequence[str] | None, implicit_vr: bool
) -> Iterator[bytes]:
    """The same matches as :func:`find`, each already encoded (little endian) for a C-FIND
    response: the lean DIMSE path sends these bytes as they are."""
    from consilium.archive.identifier_codec import encode_identifier

    for values, patient_pk in _matches(engine, query, institutions):
        pairs: list[tuple[str, Any]] = []
        counts: tuple[int, int, int] | None = None
        for keyword in query.returned:
            if keyword in values:
                pairs.append((keyword, values[keyword]))
            elif keyword in PATIENT_COUNTS and query.level is Level.PATIENT:
                counts = counts or _patient_counts(engine, patient_pk)
                pairs.append((keyword, counts[PATIENT_COUNTS.index(keyword)]))
            elif keyword != "RetrieveAETitle":
                pairs.append((keyword, None))
        yield encode_identifier(pairs, query.level.value, implicit_vr)


def _identifier(engine: Engine, query: Query, values: dict[str, Any], patient_pk: int) -> Dataset:
    ds = Dataset()
    non_ascii = any(isinstance(v, str) and not v.isascii() for v in values.values())
    if non_ascii:
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = query.level.value
    counts: tuple[int, int, int] | None = None
    for keyword in query.returned:
        if keyword in values:
            value = values[keyword]
            setattr(ds, keyword, "" if value is None else value)
        elif keyword in PATIENT_COUNTS and query.level is Level.PATIENT:
            counts = counts or _patient_counts(engine, patient_pk)
            setattr(ds, keyword, counts[PATIENT_COUNTS.index(keyword)])
        elif keyword == "RetrieveAETitle":
            continue
        else:
            setattr(ds, keyword, None)  # asked for, not indexed: returned empty
    return ds


def instance_files(
    engine: Engine, query: Query, institutions: Sequence[str] | None = None
) -> list[tuple[str, str, str, str, str]]:
    """(sop class, sop instance, transfer syntax, relative path, study uid) of every matching
    instance; used by C-MOVE and C-GET, whose identifiers carry unique keys at or above the
    level."""
    image_query = Query(Level.IMAGE, query.keys, [])
    stmt = statement(image_query, institutions).with_only_columns(
        instances.c.sop_class_uid,
        instances.c.sop_uid,
        instances.c.transfer_syntax_uid,
        instances.c.path,
        studies.c.study_uid,
    )
    with engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(stmt).all()]
