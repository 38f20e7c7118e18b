"""De-identified copies for a specialist outside the regional network: the PS3.15 Basic
Application Level Confidentiality Profile (Annex E), with the Retain Longitudinal Temporal
Information with Full Dates Option when asked.

:data:`BASIC_PROFILE` is the profile's table as this module applies it, attribute by attribute
(PS3.15 Table E.1-1, Basic Profile column; where the table offers a choice such as X/Z/D, the
first, strictest one is taken). Actions:

* ``X`` remove; ``Z`` replace with an empty value (patient name and ID get the pseudonym, a
  "dummy value" the profile allows); ``D`` replace with a dummy value; ``U`` replace a UID with
  a pseudonymous one. Dates and times listed in :data:`TEMPORAL` are kept with the option.
* every private attribute, overlay and curve group is removed (the profile's default);
  attributes the table does not name are kept (pixel data, geometry, acquisition parameters).
* sequences are walked: the table applies inside them too.

Pseudonyms are consistent: a keyed hash (HMAC-SHA256, the key generated once per archive and
kept in ``data_dir`` with mode 0600) of the patient (institution + patient ID) and of every UID.
The same patient gets the same pseudonym in two exports, the series and references of a study
still fit together, and nobody without the key can go back. Burned-in annotation is flagged,
never silently passed on: ``Burned In Annotation`` YES, or absent on modalities that commonly
burn text into pixels (US, SC, XA, RF, ES, OT).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from consilium.identity.keyfiles import read_private_file, write_private_file

PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_DATES_CODE = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XA", "RF", "ES", "OT"})

# PS3.15 Table E.1-1, Basic Profile column (the first action where the table offers several)
BASIC_PROFILE: dict[str, str] = {
    # patient
    "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z",
    "PatientBirthTime": "X", "OtherPatientIDs": "X", "OtherPatientNames": "X",
    "OtherPatientIDsSequence": "X", "PatientBirthName": "X", "PatientAge": "X",
    "PatientSize": "X", "PatientWeight": "X", "PatientAddress": "X",
    "PatientMotherBirthName": "X", "MedicalRecordLocator": "X",
    "PatientTelephoneNumbers": "X", "EthnicGroup": "X", "Occupation": "X",
    "AdditionalPatientHistory": "X", "PatientComments": "X", "PregnancyStatus": "X",
    "MedicalAlerts": "X", "Allergies": "X", "CountryOfResidence": "X",
    "RegionOfResidence": "X", "PatientInsurancePlanCodeSequence": "X",
    "PatientPrimaryLanguageCodeSequence": "X", "PatientReligiousPreference": "X",
    "MilitaryRank": "X", "BranchOfService": "X", "InsurancePlanIdentification": "X",
    "PatientSexNeutered": "X", "ResponsiblePerson": "X", "ResponsibleOrganization": "X",
    "PatientState": "X", "AdmissionID": "X", "CurrentPatientLocation": "X",
    "PatientInstitutionResidence": "X", "ReferencedPatientSequence": "X",
    "ReferencedPatientPhotoSequence": "X", "PatientTransportArrangements": "X",
    "SpecialNeeds": "X",
    # study, visit, request
    "AccessionNumber": "Z", "StudyID": "Z", "StudyDescription": "X",
    "SeriesDescription": "X", "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X", "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X", "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X", "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X", "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X", "OperatorsName": "X",
    "OperatorIdentificationSequence": "X", "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X", "RequestingPhysician": "X",
    "RequestingService": "X", "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X", "RequestedProcedureComments": "X",
    "RequestAttributesSequence": "X", "StudyComments": "X",
    "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z", "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X", "CommentsOnThePerformedProcedureStep": "X",
    "ScheduledPerformingPhysicianName": "X", "ScheduledProcedureStepDescription": "X",
    "ScheduledStepAttributesSequence": "X", "PerformedStationName": "X",
    "PerformedLocation": "X", "ConfidentialityConstraintOnPatientDataDescription": "X",
    "PhysicianApprovingInterpretation": "X", "InterpretationRecorder": "X",
    "InterpretationTranscriber": "X", "InterpretationAuthor": "X",
    "ReasonForTheRequestedProcedure": "X", "ReasonForStudy": "X",
    # institution, equipment
    "InstitutionName": "X", "InstitutionAddress": "X", "InstitutionCodeSequence": "X",
    "InstitutionalDepartmentName": "X", "StationName": "X", "DeviceSerialNumber": "X",
    "PlateID": "X", "GeneratorID": "X", "CassetteID": "X", "GantryID": "X",
    "DetectorID": "X", "UniqueDeviceIdentifier": "X", "UDISequence": "X",
    "ProtocolName": "X", "AcquisitionComments": "X", "AcquisitionProtocolDescription": "X",
    "AcquisitionContextSequence": "X", "DerivationDescription": "X", "ImageComments": "X",
    "FrameComments": "X", "TextComments": "X", "TextString": "X",
    "ContentSequence": "X", "PersonName": "D", "VerifyingObserverName": "D",
    "VerifyingObserverSequence": "D", "VerifyingOrganization": "X",
    "VerifyingObserverIdentificationCodeSequence": "Z", "AuthorObserverSequence": "X",
    "ParticipantSequence": "X", "CustodialOrganizationSequence": "X",
    "DigitalSignaturesSequence": "X", "OriginalAttributesSequence": "X",
    "ModifiedAttributesSequence": "X", "TimezoneOffsetFromUTC": "X",
    # identifiers of instances: pseudonymous UIDs
    "StudyInstanceUID": "U", "SeriesInstanceUID": "U", "SOPInstanceUID": "U",
    "MediaStorageSOPInstanceUID": "U", "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U", "ReferencedSOPInstanceUID": "U",
    "ReferencedFrameOfReferenceUID": "U", "RelatedFrameOfReferenceUID": "U",
    "InstanceCreatorUID": "U", "IrradiationEventUID": "U", "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U", "ReferencedSOPInstanceUIDInFile": "U",
    "StorageMediaFileSetUID": "U", "UID": "U", "TransactionUID": "U", "FiducialUID": "U",
    "DeviceUID": "U", "TrackingUID": "U", "SpecimenUID": "U", "TargetUID": "U",
    "PaletteColorLookupTableUID": "U", "LargePaletteColorLookupTableUID": "U",
    "FailedSOPInstanceUIDList": "U", "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID":
    "U", "TemplateExtensionCreatorUID": "U", "TemplateExtensionOrganizationUID": "U",
    "DigitalSignatureUID": "X",
    # dates and times (kept with the Retain Longitudinal Temporal Information option)
    "StudyDate": "Z", "StudyTime": "Z", "SeriesDate": "X", "SeriesTime": "X",
    "AcquisitionDate": "X", "AcquisitionTime": "X", "AcquisitionDateTime": "X",
    "ContentDate": "Z", "ContentTime": "Z", "InstanceCreationDate": "X",
    "InstanceCreationTime": "X", "OverlayDate": "X", "OverlayTime": "X", "CurveDate": "X",
    "CurveTime": "X", "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X", "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X", "DateOfLastCalibration": "X",
    "TimeOfLastCalibration": "X", "FrameAcquisitionDateTime": "X",
    "FrameReferenceDateTime": "X", "StartAcquisitionDateTime": "X",
    "EndAcquisitionDateTime": "X", "ScheduledProcedureStepStartDate": "X",
    "ScheduledProcedureStepStartTime": "X", "ScheduledProcedureStepEndDate": "X",
    "ScheduledProcedureStepEndTime": "X", "DateTime": "X", "Date": "X", "Time": "X",
    "ObservationDateTime": "X", "VerificationDateTime": "X", "RadiopharmaceuticalStartTime":
    "X", "RadiopharmaceuticalStopTime": "X", "RadiopharmaceuticalStartDateTime": "X",
    "RadiopharmaceuticalStopDateTime": "X",
}

TEMPORAL = frozenset({
    "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "AcquisitionDateTime", "ContentDate", "ContentTime",
    "InstanceCreationDate", "InstanceCreationTime", "OverlayDate", "OverlayTime", "CurveDate",
    "CurveTime", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "DateOfLastCalibration",
    "TimeOfLastCalibration", "FrameAcquisitionDateTime", "FrameReferenceDateTime",
    "StartAcquisitionDateTime", "EndAcquisitionDateTime", "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime", "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime", "DateTime", "Date", "Time", "ObservationDateTime",
    "VerificationDateTime", "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStopTime",
    "RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStopDateTime",
})


def _tags() -> dict[BaseTag, tuple[str, str]]:
    found: dict[BaseTag, tuple[str, str]] = {}
    for keyword, action in BASIC_PROFILE.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise LookupError(f"{keyword} is no DICOM keyword (the profile table has a typo)")
        found[Tag(tag)] = (keyword, action)
    return found


PROFILE_TAGS = _tags()
_REMOVED_GROUPS = range(0x5000, 0x5100)  # curves (retired) and, below, overlays
_OVERLAY_GROUPS = range(0x6000, 0x6100)


@dataclass(frozen=True)
class Options:
    """The profile's options that Consilium offers."""

    retain_dates: bool = False  # Retain Longitudinal Temporal Information Full Dates Option


class Pseudonyms:
    """Keyed, deterministic pseudonyms: the same input gives the same output for this
    archive's key, and nothing leads back without it."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key has at least 16 bytes")
        self._key = key

    @classmethod
    def of_folder(cls, folder: Path) -> Pseudonyms:
        """The archive's key in ``folder/deidentify.key`` (created, mode 0600, on first use)."""
        path = folder / "deidentify.key"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_private_file(path, secrets.token_bytes(32))
        return cls(read_private_file(path))

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def patient(self, institution: str, patient_id: str) -> str:
        """``ANON-`` and 12 hex digits for a patient of an institution."""
        return "ANON-" + self._digest("patient", f"{institution}\0{patient_id}").hex()[
            :12].upper()

    def uid(self, uid: str) -> str:
        """A UID under ``2.25`` (PS3.5 B.2: a UUID-derived root) from the original UID."""
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))


def burned_in(ds: Dataset) -> str | None:
    """Why the pixels may hold identifying text, or None."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "Burned In Annotation is YES"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if not flag and modality in BURNED_IN_MODALITIES:
        return f"{modality} images often carry burned-in text (Burned In Annotation absent)"
    return None


def _walk(ds: Dataset) -> Iterator[Dataset]:
    yield ds
    for element in ds:
        if element.VR == "SQ" and element.value:
            for item in element.value:
                yield from _walk(item)


def _apply(ds: Dataset, pseudonyms: Pseudonyms, options: Options, pseudonym: str) -> None:
    for tag in list(ds.keys()):
        element = ds[tag]
        group = tag.group
        if tag.is_private or group in _REMOVED_GROUPS or group in _OVERLAY_GROUPS:
            del ds[tag]
            continue
        rule = PROFILE_TAGS.get(tag)
        if rule is None:
            if element.VR == "SQ" and element.value:
                for item in element.value:
                    _apply(item, pseudonyms, options, pseudonym)
            continue
        keyword, action = rule
        if options.retain_dates and keyword in TEMPORAL:
            continue
        if action == "X":
            del ds[tag]
        elif action == "U":
            if element.VM > 1:
                element.value = [pseudonyms.uid(str(v)) for v in element.value]
            elif element.value:
                element.value = pseudonyms.uid(str(element.value))
        elif keyword in ("PatientName", "PatientID"):
            element.value = pseudonym if keyword == "PatientID" else f"ANONYMOUS^{pseudonym}"
        elif element.VR == "SQ":
            element.value = Sequence([])
        elif action == "D":
            element.value = "ANONYMOUS" if element.VR == "PN" else (
                "" if element.VR in ("DA", "TM", "DT") else "REMOVED")
        else:  # Z
            element.value = ""


def deidentify(ds: Dataset, pseudonyms: Pseudonyms, institution: str,
               options: Options = Options()) -> Dataset:
    """``ds`` de-identified in place by the Basic Profile (and its options), returned."""
    patient = pseudonyms.patient(institution, str(ds.get("PatientID", "") or ""))
    _apply(ds, pseudonyms, options, patient)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for tag in [e.tag for e in meta if e.tag.is_private]:
            del meta[tag]
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID",
                        "PrivateInformation"):
            if keyword in meta:
                delattr(meta, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = (
        "UNMODIFIED" if options.retain_dates else "REMOVED")
    codes = [PROFILE_CODE] + ([RETAIN_DATES_CODE] if options.retain_dates else [])
    ds.DeidentificationMethod = "PS3.15 Basic Profile" + (
        " + Retain Longitudinal Full Dates" if options.retain_dates else "")  # LO: 64
    sequence = []
    for code, meaning in codes:
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        sequence.append(item)
    ds.DeidentificationMethodCodeSequence = sequence
    if "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def leftovers(ds: Dataset, options: Options = Options()) -> list[str]:
    """What the profile should have removed or replaced and is still there (the check of an
    exported copy): attributes with action X present, Z/D present with a value other than a
    pseudonym or dummy, private attributes. UIDs are checked by the caller against the
    originals (their replacement is consistent, not empty)."""
    problems = []
    for item in _walk(ds):
        for element in item:
            if element.tag.is_private:
                problems.append(f"private {element.tag}")
                continue
            rule = PROFILE_TAGS.get(element.tag)
            if rule is None:
                continue
            keyword, action = rule
            if options.retain_dates and keyword in TEMPORAL:
                continue
            if action == "X":
                problems.append(f"{keyword} present")
            elif action in ("Z", "D") and element.VR != "SQ" and element.value not in (
                    None, "", "ANONYMOUS", "REMOVED") and not str(element.value).startswith(
                    ("ANON-", "ANONYMOUS^")):
                problems.append(f"{keyword} = {element.value!r}")
    return problems
