"""The closed protocol as DICOM objects beside each study of its case, made the way a signed
conclusion's are (:mod:`consilium.consult.conclusion_dicom`, whose builders are used as they
are): an Encapsulated PDF of the protocol's very bytes and a verified Basic Text SR whose
verifying observers are the participants who agreed, with the decision, the participants and
each dissent as content items.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from consilium.consult.conclusion_dicom import basic_text_sr, code, derived_uid, encapsulated_pdf
from consilium.consult.models import Conclusion
from consilium.live.protocol_pdf import ProtocolDocument

SERIES_PDF = 9900
SERIES_SR = 9901
CONCLUSION = ("121077", "DCM", "Conclusion")
COMMENT = ("121106", "DCM", "Comment")
PERSON_OBSERVER = ("121008", "DCM", "Person Observer Name")


def protocol_uids(doc: ProtocolDocument, study_uid: str, kind: str) -> tuple[str, str]:
    """(series, instance) UIDs, derived from what was signed: a retry names the same ones."""
    seed = ("consilium-protocol", doc.session_id, doc.content_sha256, study_uid, kind)
    return derived_uid("series", *seed), derived_uid("instance", *seed)


def _stand_in(doc: ProtocolDocument) -> Conclusion:
    """The protocol in the shape the conclusion builders read (never stored)."""
    return Conclusion(case_id=doc.case_id, version=doc.version, findings="",
                      impression=doc.text, recommendations="", author=doc.chair.subject,
                      author_name=doc.chair.name, author_institution=doc.chair.institution,
                      signed_at=doc.closed_at, content_sha256=doc.content_sha256)


def _title(doc: ProtocolDocument) -> str:
    return f"Consilium protocol v{doc.version}"[:64]


def protocol_pdf_dataset(source: Dataset, pdf: bytes, doc: ProtocolDocument, sop_uid: str,
                         series_uid: str, institution_name: str) -> Dataset:
    ds = encapsulated_pdf(source, pdf, _stand_in(doc), sop_uid, series_uid, institution_name)
    ds.DocumentTitle = ds.SeriesDescription = _title(doc)
    ds.SeriesNumber = SERIES_PDF
    return ds


def _text(concept: tuple[str, str, str], value: str, relationship: str = "CONTAINS") -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([code(concept)])
    item.TextValue = value
    return item


def protocol_sr_dataset(source: Dataset, doc: ProtocolDocument, sop_uid: str, series_uid: str,
                        institution_name: str, names: dict[str, str]) -> Dataset:
    ds = basic_text_sr(source, _stand_in(doc), sop_uid, series_uid, institution_name, None)
    ds.SeriesDescription = f"{_title(doc)} (SR)"[:64]
    ds.SeriesNumber = SERIES_SR
    observers = []
    for signed in doc.signatures:
        if not signed.agree:
            continue
        observer = Dataset()
        observer.VerifyingObserverName = (signed.person.name or signed.person.subject)[:64]
        observer.VerifyingObserverIdentificationCodeSequence = Sequence()
        observer.VerifyingOrganization = names.get(signed.person.institution,
                                                   signed.person.institution)[:64]
        observer.VerificationDateTime = signed.at.strftime("%Y%m%d%H%M%S+0000")
        observers.append(observer)
    ds.VerifyingObserverSequence = Sequence(observers)
    items = []
    for person in doc.participants:
        item = Dataset()
        item.RelationshipType = "HAS OBS CONTEXT"
        item.ValueType = "PNAME"
        item.ConceptNameCodeSequence = Sequence([code(PERSON_OBSERVER)])
        item.PersonName = (person.name or person.subject)[:64]
        items.append(item)
    items.append(_text(CONCLUSION, doc.text))
    for signed in doc.signatures:
        if not signed.agree:
            who = signed.person.name or signed.person.subject
            place = names.get(signed.person.institution, signed.person.institution)
            items.append(_text(COMMENT, f"Dissent: {who}, {place}: {signed.dissent}"))
    ds.ContentSequence = Sequence(items)
    return ds
