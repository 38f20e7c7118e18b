"""The signed conclusion as DICOM objects for the archive, beside the images it is about:
an Encapsulated PDF (PS3.3 A.45.1, the PDF's very bytes) and a verified Basic Text SR
(PS3.3 A.35.1: findings, impression, recommendations; an amendment names its predecessor).

Both copy the patient and study of an archived instance of the study, so the hospital's own
DICOM nodes find the opinion in the study; UIDs are derived from what is signed
(:func:`derived_uid`), so writing the same version again names the same instances.
"""

from __future__ import annotations

import warnings
from datetime import UTC

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from consilium.archive.dicomfile import encode_part10
from consilium.consult.cases import aware
from consilium.consult.models import ArchivedDocument, Conclusion

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

CONSULT_NOTE = ("11488-4", "LN", "Consult note")
FINDING = ("121071", "DCM", "Finding")
IMPRESSION = ("121073", "DCM", "Impression")
RECOMMENDATION = ("121075", "DCM", "Recommendation")

# copied from an archived instance of the study, so the new instances join its patient and study
_PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                  "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription")
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
           "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def derived_uid(*parts: object) -> str:
    """A UID derived from what is signed, so a retry names the same instance."""
    return str(generate_uid(entropy_srcs=["consilium-consult", *map(str, parts)]))


def _base(source: Dataset, sop_class: str, sop_uid: str, series_uid: str, modality: str,
          series_number: int, description: str, conclusion: Conclusion,
          institution_name: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    signed_at = aware(conclusion.signed_at).astimezone(UTC)
    date, time = signed_at.strftime("%Y%m%d"), signed_at.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword in _PATIENT_STUDY:
            value = source.get(keyword)
            if value is not None and value != "":
                setattr(ds, keyword, str(value))
    for keyword in _TYPE_2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.Manufacturer = "Consilium"
    ds.InstitutionName = institution_name[:64]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    return ds


def part10(ds: Dataset) -> bytes:
    """The instance as the PS3.10 file that goes into the archive."""
    return encode_part10(ds)


def encapsulated_pdf(source: Dataset, pdf: bytes, conclusion: Conclusion, sop_uid: str,
                     series_uid: str, institution_name: str) -> Dataset:
    """An Encapsulated PDF instance (PS3.3 A.45.1) of the conclusion in the source's study."""
    title = f"Consult conclusion v{conclusion.version}"
    ds = _base(source, ENCAPSULATED_PDF, sop_uid, series_uid, "DOC",
               9000 + 2 * conclusion.version, title, conclusion, institution_name)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.AcquisitionDateTime = aware(conclusion.signed_at).astimezone(UTC).strftime(
        "%Y%m%d%H%M%S+0000")
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = Sequence([code(CONSULT_NOTE)])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds


def basic_text_sr(source: Dataset, conclusion: Conclusion, sop_uid: str, series_uid: str,
                  institution_name: str, predecessor: ArchivedDocument | None) -> Dataset:
    """A verified Basic Text SR (PS3.3 A.35.1): findings, impression, recommendations."""
    ds = _base(source, BASIC_TEXT_SR, sop_uid, series_uid, "SR",
               9001 + 2 * conclusion.version, f"Consult conclusion v{conclusion.version} (SR)",
               conclusion, institution_name)
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = (conclusion.author_name or conclusion.author)[:64]
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    observer.VerifyingOrganization = institution_name[:64] or conclusion.author_institution
    observer.VerificationDateTime = aware(conclusion.signed_at).astimezone(UTC).strftime(
        "%Y%m%d%H%M%S+0000")
    ds.VerifyingObserverSequence = Sequence([observer])
    if predecessor is not None:
        sop = Dataset()
        sop.ReferencedSOPClassUID = predecessor.sop_class_uid
        sop.ReferencedSOPInstanceUID = predecessor.sop_instance_uid
        series = Dataset()
        series.SeriesInstanceUID = predecessor.series_uid
        series.ReferencedSOPSequence = Sequence([sop])
        study = Dataset()
        study.StudyInstanceUID = predecessor.study_uid
        study.ReferencedSeriesSequence = Sequence([series])
        ds.PredecessorDocumentsSequence = Sequence([study])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([code(CONSULT_NOTE)])
    ds.ContinuityOfContent = "SEPARATE"
    items = []
    for concept, text in ((FINDING, conclusion.findings), (IMPRESSION, conclusion.impression),
                          (RECOMMENDATION, conclusion.recommendations)):
        if not text.strip():
            continue
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "TEXT"
        item.ConceptNameCodeSequence = Sequence([code(concept)])
        item.TextValue = text
        items.append(item)
    ds.ContentSequence = Sequence(items)
    return ds
