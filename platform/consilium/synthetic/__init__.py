"""Synthetic DICOM for the demo, the tests and the benchmarks, made in one place: chest CT
series from a deterministic phantom (:mod:`.ct`, :mod:`.chest`) and small instances of any kind
with their encodings (:mod:`.instances`). Nothing of it is a clinical image."""

from consilium.synthetic.anatomy import HU_MAX, HU_MIN
from consilium.synthetic.ct import generate_ct_series, make_study_uid, write_ct_series
from consilium.synthetic.instances import (
    PatientSpec,
    StudySpec,
    dataset_bytes,
    encoded,
    image,
    write,
)

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "PatientSpec",
    "StudySpec",
    "dataset_bytes",
    "encoded",
    "generate_ct_series",
    "image",
    "make_study_uid",
    "write",
    "write_ct_series",
]
