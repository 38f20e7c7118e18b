"""What the consult domain receives from whoever runs it (the web app, the CLI, a test): the
database, the audit trail, its settings, where documents go, and whom to tell of a change.

Every domain function takes a :class:`ConsultContext` first; none imports the runtime or reads
settings itself. ``notify`` is called by the domain functions after each change is committed
(the case and a word for what happened: ``created``, ``edited``, ``submit``, ``accept``, ...,
``message``, ``attachment``), so every caller notifies the parties, not only the HTTP routes.
It is called from whatever thread the domain function runs in (the web routes run them in
worker threads) and must return at once: the live notifier
(:class:`consilium.live.notify.CaseNotifier`) hands the emission to its event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from consilium.archive.ingest import ArchiveStore
from consilium.audit import AuditTrail
from consilium.consult.models import ConsultCase, Priority
from consilium.consult.pdf_text import PdfText
from consilium.settings import Settings

MIB = 1024 * 1024

Notify = Callable[[ConsultCase, str], object]  # what it returns is not used


def nobody(_case: ConsultCase, _what: str) -> None:
    """The notifier of a context without live clients (the CLI, most tests)."""


@dataclass(frozen=True)
class DocumentsConfig:
    """Where attachments, conclusion PDFs and the conclusions' DICOM objects go."""

    store: ArchiveStore
    files_dir: Path
    attachment_max_bytes: int = 20 * MIB
    institution_names: Mapping[str, str] = field(default_factory=dict)
    fsync: bool = True
    text: PdfText = field(default_factory=PdfText)  # language and time zone of the PDF


@dataclass(frozen=True)
class ConsultContext:
    """What every consult function works with."""

    engine: Engine
    audit: AuditTrail
    due_hours: Mapping[Priority, float]  # from submission to due, by priority
    grant_retention: timedelta = timedelta(days=30)
    documents: DocumentsConfig | None = None  # attachments, PDFs, the archive: off when None
    notify: Notify = nobody

    @property
    def files(self) -> DocumentsConfig:
        """The documents configuration; a context without one cannot store documents."""
        if self.documents is None:
            raise RuntimeError("the consult context has no documents configuration")
        return self.documents


def due_hours(settings: Settings) -> dict[Priority, float]:
    """``consult.due_hours_*``: the one source of the due times."""
    return {Priority.EMERGENCY: settings.consult_due_hours_emergency,
            Priority.URGENT: settings.consult_due_hours_urgent,
            Priority.ROUTINE: settings.consult_due_hours_routine}


def consult_context(settings: Settings, engine: Engine, audit: AuditTrail,
                    store: ArchiveStore | None, notify: Notify = nobody) -> ConsultContext:
    """The context of a process, from its settings; without a store, no documents."""
    documents = None if store is None else DocumentsConfig(
        store, settings.data_dir / "attachments", int(settings.consult_attachment_max_mb * MIB),
        {i.id: i.name for i in settings.institutions}, settings.storage_fsync,
        PdfText(settings.ui_default_language, settings.ui_time_zone))
    return ConsultContext(engine, audit, due_hours(settings),
                          timedelta(days=settings.consult_grant_retention_days), documents,
                          notify)
