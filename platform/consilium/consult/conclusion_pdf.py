"""The signed conclusion as a PDF: rendered once from what was signed, kept by content, and
the same bytes ever after (the download, the Encapsulated PDF in the archive, a retry).

The PDF's creation date is the signing time and its text only what is signed, so rendering
again gives the same bytes. DejaVu fonts (Debian's fonts-dejavu-core) print Cyrillic.
"""

from __future__ import annotations

from datetime import UTC
from io import BytesIO
from pathlib import Path

from sqlmodel import Session

from consilium.archive import catalog
from consilium.archive.catalog import StudyFacts
from consilium.audit import Actor, AuditAction
from consilium.consult.cases import actor_of, aware, load_case, signed_version
from consilium.consult.context import ConsultContext
from consilium.consult.files import read_file, write_file
from consilium.consult.marks_source import case_marks
from consilium.consult.models import Conclusion, ConsultCase
from consilium.consult.pdf_text import PdfText
from consilium.identity.policy import Principal

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # Debian's fonts-dejavu-core
KEY_IMAGES_MAX = 24  # key images printed, each as a small image with its caption
KEY_IMAGE_MM, KEY_IMAGE_PX = 40, 256  # printed height; rendered size (about 160 dpi at 40 mm)


def _person(name: str) -> str:
    """DICOM PN to text: 'ИВАНОВ^ИВАН' -> 'ИВАНОВ ИВАН'."""
    return " ".join(part for part in name.split("=")[0].split("^") if part)


def render_pdf(ctx: ConsultContext, case: ConsultCase, conclusion: Conclusion,
               facts: list[StudyFacts]) -> bytes:
    """The signed conclusion as a one-document PDF (DejaVu fonts, so Cyrillic prints). The
    bytes depend only on what is signed: the PDF's creation date is the signing time."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    names = ctx.documents.institution_names if ctx.documents else {}
    tr = ctx.documents.text if ctx.documents else PdfText()
    signed_at = aware(conclusion.signed_at).astimezone(UTC)
    pdf = FPDF(format="A4")
    pdf.set_creation_date(signed_at)
    pdf.set_title(tr("doc_title", case=case.id, version=conclusion.version))
    pdf.set_author(conclusion.author_name or conclusion.author)
    pdf.set_creator("Consilium")
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def line(text: str, size: float = 10, style: str = "", gap: float = 0) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if gap:
            pdf.ln(gap)

    def labelled(label: str, value: str) -> None:
        line(label, 9, "B")
        line(value or "-", 10, gap=2)

    def inst(identifier: str) -> str:
        return names.get(identifier, identifier)

    line(tr("title"), 15, "B", gap=2)
    line(tr("case_line", case=case.id, version=conclusion.version,
            when=tr.instant(signed_at)), 9, gap=3)
    line(tr("from", institution=inst(case.requester_institution),
            person=case.requester_name), 10)
    line(tr("to", institution=inst(case.target_institution))
         + (f", {case.target_specialty}" if case.target_specialty else ""), 10, gap=3)
    patient = facts[0] if facts else None
    labelled(tr("patient"), tr("patient_line", name=_person(patient.patient_name),
                               patient_id=patient.patient_id,
                               born=tr.date(patient.birth_date) or "-",
                               sex=tr.sex(patient.sex))
             if patient else f"{_person(case.patient_name)} · ID {case.patient_id}")
    labelled(tr("studies"), "\n".join(
        tr("study_line", date=tr.date(f.study_date) or "-", modalities=f.modalities or "-",
           description=f.description or "-", accession=f.accession_number or "-")
        for f in facts))
    labelled(tr("question"), case.question)
    if case.clinical_info:
        labelled(tr("clinical_info"), case.clinical_info)
    labelled(tr("findings"), conclusion.findings)
    labelled(tr("impression"), conclusion.impression)
    labelled(tr("recommendations"), conclusion.recommendations)
    if conclusion.replaces_version:
        labelled(tr("amendment"), tr("amendment_line", version=conclusion.replaces_version,
                                     reason=conclusion.amendment_reason))
    shown = _key_images(ctx, case)
    if shown:
        line(tr("key_images"), 9, "B")
        for label, caption, png in shown:
            if pdf.will_page_break(KEY_IMAGE_MM + 4):
                pdf.add_page()
            top = pdf.get_y()
            if png is not None:
                pdf.image(BytesIO(png), x=pdf.l_margin, y=top, h=KEY_IMAGE_MM)
            pdf.set_xy(pdf.l_margin + KEY_IMAGE_MM + 4, top)
            pdf.set_font("DejaVu", "", 9)
            pdf.multi_cell(0, 4.5, label + (f"\n{caption}" if caption else ""),
                           new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_y(max(pdf.get_y(), top + KEY_IMAGE_MM) + 3)
        pdf.ln(2)
    labelled(tr("signed_by"), f"{conclusion.author_name or conclusion.author}, "
                              f"{inst(conclusion.author_institution)}, "
                              f"{tr.instant(signed_at)}")
    line(tr("sha256", sha=conclusion.content_sha256), 7)
    return bytes(pdf.output())


def _key_images(ctx: ConsultContext, case: ConsultCase) -> list[tuple[str, str, bytes | None]]:
    """(series and image line, caption, small PNG or None) of each key image of the case
    that is stored in the archive, at most :data:`KEY_IMAGES_MAX`."""
    if ctx.documents is None:
        return []
    tr, store = ctx.documents.text, ctx.documents.store
    with Session(ctx.engine) as session:
        _marks, keys = case_marks(session, case.id or 0)
    shown = []
    for key in keys[:KEY_IMAGES_MAX]:
        ref = key.image
        header = catalog.instance_headers(store, ref.study_uid, [ref.sop_instance_uid]).get(
            ref.sop_instance_uid)
        if header is None:
            continue
        description = str(header.get("SeriesDescription", "") or "")
        label = tr("key_image_line", series=header.get("SeriesNumber", "") or "-",
                   description=f"«{description}»" if description else "",
                   number=header.get("InstanceNumber", "") or "-",
                   frame=tr("key_image_frame", frame=ref.frame) if ref.frame else "")
        png = catalog.image_preview(store, ref.study_uid, ref.sop_instance_uid, ref.frame,
                                    KEY_IMAGE_PX)
        shown.append((" ".join(label.split()), key.caption, png))
    return shown


def ensure_pdf(ctx: ConsultContext, case: ConsultCase, conclusion: Conclusion,
               uids: list[str]) -> bytes:
    """The conclusion's PDF: rendered once, kept by content, the same bytes ever after."""
    config = ctx.files
    if conclusion.pdf_sha256:
        kept = read_file(config, conclusion.pdf_sha256)
        if kept is not None:
            return kept
    data = render_pdf(ctx, case, conclusion, catalog.study_facts(ctx.engine, uids))
    sha256 = write_file(config, data)
    if sha256 != conclusion.pdf_sha256:
        with Session(ctx.engine) as session:
            row = session.get(Conclusion, conclusion.id)
            if row is not None and not row.pdf_sha256:
                row.pdf_sha256 = sha256
                session.add(row)
                session.commit()
    return data


def conclusion_pdf(ctx: ConsultContext, principal: Principal, case_id: int, version: int,
                   actor: Actor | None = None) -> bytes:
    """The PDF of a signed version, for a caller who may see the case (audited export)."""
    with Session(ctx.engine) as session:
        load_case(session, principal, case_id)
    case, conclusion, uids = signed_version(ctx, case_id, version)
    data = ensure_pdf(ctx, case, conclusion, uids)
    ctx.audit.record(actor or actor_of(principal), AuditAction.EXPORT,
                     study_uid=uids[0] if uids else "", patient_id=case.patient_id,
                     patient_name=case.patient_name,
                     detail={"what": "conclusion pdf", "case": case_id, "version": version})
    return data


def pdf_filename(case_id: int, version: int) -> str:
    return f"consult-{case_id}-conclusion-v{version}.pdf"
