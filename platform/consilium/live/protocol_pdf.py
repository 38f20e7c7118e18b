"""The closed consilium protocol as a PDF: who took part (names, institutions), the decision,
the key images, each signature and each dissent.

Rendered once when the chair closes the protocol, from what was signed only (the creation date
is the closing time), and kept by content like a conclusion's PDF: the same bytes are attached
to the case, downloaded and written into the archive. Fonts, the words' language and the time
zone as for conclusions (:mod:`consilium.consult.conclusion_pdf`,
:mod:`consilium.consult.pdf_text`): DejaVu prints Cyrillic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consilium.archive.catalog import StudyFacts
from consilium.archive.marks import KeyImage
from consilium.consult.conclusion_pdf import FONT_DIR, _person
from consilium.consult.pdf_text import PdfText
from consilium.i18n import Table, check_table, text

TEXTS: Table = {
    "ru": {
        "title": "Протокол консилиума",
        "doc_title": "Протокол консилиума, случай {case}",
        "case_line": "Случай {case} · {title} · {opened} — {ended}",
        "chair": "Председатель: {person}, {institution}",
        "patient": "Пациент",
        "patient_line": "{name} · ID {patient_id} · дата рождения {born} · пол {sex}",
        "studies": "Исследования",
        "study_line": "{date} · {modalities} · {description} · номер направления {accession}",
        "question": "Вопрос",
        "participants": "Участники",
        "participant_line": "{person}, {institution}",
        "decision": "Решение (версия {version})",
        "key_images": "Ключевые изображения",
        "key_image_line": "{series} · изображение {number} · {uid}{caption}",
        "signatures": "Подписи",
        "agreed": "Согласен(на): {person}, {institution}, {when}",
        "dissented": "Особое мнение: {person}, {institution}, {when}",
        "closed_by": "Протокол закрыт: {person}, {when}",
        "sha256": "SHA-256 содержания: {sha}",
        "none": "нет",
        "sex.M": "М",
        "sex.F": "Ж",
        "sex.O": "другой",
    },
    "en": {
        "title": "Consilium protocol",
        "doc_title": "Consilium protocol, case {case}",
        "case_line": "Case {case} · {title} · {opened} — {ended}",
        "chair": "Chair: {person}, {institution}",
        "patient": "Patient",
        "patient_line": "{name} · ID {patient_id} · born {born} · sex {sex}",
        "studies": "Studies",
        "study_line": "{date} · {modalities} · {description} · accession {accession}",
        "question": "Question",
        "participants": "Participants",
        "participant_line": "{person}, {institution}",
        "decision": "Decision (version {version})",
        "key_images": "Key images",
        "key_image_line": "{series} · image {number} · {uid}{caption}",
        "signatures": "Signatures",
        "agreed": "Agreed: {person}, {institution}, {when}",
        "dissented": "Dissent: {person}, {institution}, {when}",
        "closed_by": "Protocol closed: {person}, {when}",
        "sha256": "Content SHA-256: {sha}",
        "none": "none",
        "sex.M": "M",
        "sex.F": "F",
        "sex.O": "other",
    },
}
check_table(TEXTS)


@dataclass(frozen=True)
class Person:
    subject: str
    name: str
    institution: str


@dataclass(frozen=True)
class Signed:
    person: Person
    agree: bool
    dissent: str
    at: datetime


@dataclass(frozen=True)
class ProtocolDocument:
    """Everything the PDF (and the SR) says, gathered when the protocol is closed."""

    case_id: int
    session_id: str
    title: str
    question: str
    patient_name: str
    patient_id: str
    opened_at: datetime | None
    ended_at: datetime | None
    chair: Person
    participants: list[Person]
    version: int
    text: str
    signatures: list[Signed]
    closed_at: datetime
    closed_by: Person
    content_sha256: str
    facts: list[StudyFacts] = field(default_factory=list)
    key_images: list[KeyImage] = field(default_factory=list)


def render_protocol_pdf(doc: ProtocolDocument, names: Mapping[str, str],
                        tr: PdfText) -> bytes:
    """The protocol as a PDF; the bytes depend only on ``doc`` (and the language)."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    def say(key: str, **values: object) -> str:
        return text(TEXTS, tr.language, key, **values)

    def inst(identifier: str) -> str:
        return names.get(identifier, identifier)

    def when(value: datetime | None) -> str:
        return tr.instant(value) if value is not None else "-"

    closed_at = doc.closed_at.astimezone(UTC)
    pdf = FPDF(format="A4")
    pdf.set_creation_date(closed_at)
    pdf.set_title(say("doc_title", case=doc.case_id))
    pdf.set_author(doc.chair.name or doc.chair.subject)
    pdf.set_creator("Consilium")
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def line(value: str, size: float = 10, style: str = "", gap: float = 0) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.multi_cell(0, size * 0.5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if gap:
            pdf.ln(gap)

    def labelled(label: str, value: str) -> None:
        line(label, 9, "B")
        line(value or "-", 10, gap=2)

    line(say("title"), 15, "B", gap=2)
    line(say("case_line", case=doc.case_id, title=doc.title or doc.session_id,
             opened=when(doc.opened_at), ended=when(doc.ended_at)), 9, gap=1)
    line(say("chair", person=doc.chair.name, institution=inst(doc.chair.institution)), 10,
         gap=3)
    patient = doc.facts[0] if doc.facts else None
    labelled(say("patient"), say("patient_line", name=_person(patient.patient_name),
                                 patient_id=patient.patient_id,
                                 born=tr.date(patient.birth_date) or "-",
                                 sex=tr.sex(patient.sex))
             if patient else f"{_person(doc.patient_name)} · ID {doc.patient_id}")
    labelled(say("studies"), "\n".join(
        say("study_line", date=tr.date(f.study_date) or "-", modalities=f.modalities or "-",
            description=f.description or "-", accession=f.accession_number or "-")
        for f in doc.facts))
    labelled(say("question"), doc.question)
    labelled(say("participants"), "\n".join(
        say("participant_line", person=p.name or p.subject, institution=inst(p.institution))
        for p in doc.participants))
    labelled(say("decision", version=doc.version), doc.text)
    labelled(say("key_images"), "\n".join(
        say("key_image_line", series=k.series_description or k.image.series_uid or "-",
            number=k.instance_number if k.instance_number is not None else "-",
            uid=k.image.sop_instance_uid, caption=f" · {k.caption}" if k.caption else "")
        for k in doc.key_images) or say("none"))
    line(say("signatures"), 9, "B")
    for signed in doc.signatures:
        person = signed.person
        key = "agreed" if signed.agree else "dissented"
        line(say(key, person=person.name or person.subject,
                 institution=inst(person.institution), when=when(signed.at)), 10)
        if not signed.agree:
            line(signed.dissent, 10, gap=1)
    pdf.ln(2)
    line(say("closed_by", person=doc.closed_by.name or doc.closed_by.subject,
             when=when(closed_at)), 10, gap=2)
    line(say("sha256", sha=doc.content_sha256), 7)
    return bytes(pdf.output())
