"""Where the archiving of a signed document takes a case's marks and key images from.

The case keeps them in its own tables (:mod:`consilium.consult.annotations`); series, instance
number and frame of each key image are filled in from the archive when the objects are written.
"""

from __future__ import annotations

from sqlmodel import Session

from consilium.archive.marks import KeyImage, Mark
from consilium.consult.annotations import list_key_images, list_marks


def case_marks(db: Session, case_id: int) -> tuple[list[Mark], list[KeyImage]]:
    """The case's marks (oldest first) and key images (in the order they were marked)."""
    return list_marks(db, case_id), list_key_images(db, case_id)
