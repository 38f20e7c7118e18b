"""Where the archiving of a signed document takes a case's marks and key images from: the one
place to switch when the case's annotations get their own store.

Today a case keeps only its key images, as SOP Instance UIDs per linked study
(``consult_case_study.key_images``); it has no marks yet. The series, instance number and
frame of each key image are filled in from the archive when the objects are written.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from consilium.archive.marks import ImageRef, KeyImage, Mark
from consilium.consult.models import CaseStudy


def case_marks(db: Session, case_id: int) -> tuple[list[Mark], list[KeyImage]]:
    """The case's marks and key images, in the order they were chosen."""
    rows = db.exec(select(CaseStudy).where(CaseStudy.case_id == case_id)
                   .order_by(col(CaseStudy.id))).all()
    keys = [KeyImage(image=ImageRef(study_uid=row.study_uid, series_uid="",
                                    sop_instance_uid=sop))
            for row in rows for sop in row.key_images.split("\\") if sop]
    return [], keys
