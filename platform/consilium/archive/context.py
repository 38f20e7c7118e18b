"""What the archive's web adapters (DICOMweb, remote PACS, federation, media, the Modality
Worklist API) receive from whoever assembles them: the settings, the database, the store of
files, the audit trail and the gate of every read of patient data.

The process builds one (:attr:`consilium.service.Runtime.archive`) and hands it down; no archive
module imports the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from consilium.archive.access import ArchiveAccess
from consilium.archive.ingest import ArchiveStore
from consilium.audit import AuditTrail
from consilium.settings import Settings


@dataclass(frozen=True)
class ArchiveContext:
    settings: Settings
    engine: Engine
    store: ArchiveStore
    audit: AuditTrail
    access: ArchiveAccess  # the one gate of every read of patient data
