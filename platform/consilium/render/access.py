"""Render requests through the archive's gate (:mod:`consilium.archive.access`).

A render request names a series. The gate finds its stored files and checks that the reader
may read its study, exactly as for the images over DICOMweb; a series that does not exist and
one the reader may not read get the same 404 ``no such series here`` and the same ``denied``
audit event (of the series asked). A rendered view is a ``frame`` access of the study (the
audit trail's one coalescing rule keeps a drag of 30 frames per second to one event), an STL
download an ``export`` each time.

The gate's lookups run in worker threads: the event loop never waits on the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from consilium.archive import catalog
from consilium.archive.access import ArchiveAccess, Purpose, Reader, StudyRef, Unreadable
from consilium.render.bridge import RenderFailure
from consilium.render.protocol import SeriesSource

NOT_FOUND = "no such series here"


@dataclass(frozen=True)
class OpenSeries:
    """A series the reader was let through to: its files and its study."""

    source: SeriesSource
    study: StudyRef


class RenderAccess:
    """The gate, in the render service's terms (:class:`RenderFailure`, :class:`SeriesSource`)."""

    def __init__(self, gate: ArchiveAccess) -> None:
        self.gate = gate

    async def series(self, reader: Reader, series_uid: str, purpose: Purpose,
                     detail: dict[str, Any]) -> OpenSeries:
        """The stored files of ``series_uid`` if ``reader`` may read its study (the access
        recorded), else :class:`RenderFailure` 404 (the refusal recorded)."""
        return await anyio.to_thread.run_sync(self._series, reader, series_uid, purpose, detail)

    def _series(self, reader: Reader, series_uid: str, purpose: Purpose,
                detail: dict[str, Any]) -> OpenSeries:
        try:
            files = self.gate.require_series(reader, series_uid, purpose, detail)
        except Unreadable as exc:
            raise RenderFailure(404, NOT_FOUND) from exc
        source = SeriesSource(series_uid=series_uid, study_uid=files.study.study_uid,
                              paths=tuple(str(p) for p in files.paths),
                              fingerprint=SeriesSource.digest(files.sha256))
        return OpenSeries(source, files.study)

    async def prepared(self, series_uid: str) -> OpenSeries:
        """The files of a series for work that hands nothing to anyone by itself: warming a
        live session's volumes, and rendering a session's shared stream, whose every recipient
        the session let through the gate and records (:mod:`consilium.live.render_share`).
        :class:`LookupError` for an unknown series. Records nothing."""
        return await anyio.to_thread.run_sync(self._prepared, series_uid)

    def _prepared(self, series_uid: str) -> OpenSeries:
        rows = catalog.series_instances(self.gate.engine, series_uid)
        if not rows or self.gate.store is None:
            raise LookupError(series_uid)
        store = self.gate.store
        source = SeriesSource(series_uid=series_uid, study_uid=rows[0].study_uid,
                              paths=tuple(str(store.path_of(r.path)) for r in rows),
                              fingerprint=SeriesSource.digest([r.sha256 for r in rows]))
        return OpenSeries(source, StudyRef(rows[0].study_uid, rows[0].institution_id))

    async def still_allowed(self, reader: Reader, opened: OpenSeries) -> bool:
        """Whether ``reader`` may still read the study (a grant can end during a stream)."""
        return await anyio.to_thread.run_sync(
            lambda: self.gate.still_allowed(reader, opened.study, Purpose.FRAME,
                                            series_uid=opened.source.series_uid))

    def viewed(self, reader: Reader, opened: OpenSeries, what: str) -> None:
        """More frames of a stream the reader opened (coalesced by the audit trail)."""
        self.gate.viewed(reader, opened.study, Purpose.FRAME,
                         {"what": what, "series": opened.source.series_uid})
