"""Case documents: attachments over HTTP, the signed conclusion as PDF, and the conclusion
written into the archive beside its study (Encapsulated PDF + Basic Text SR), found and
retrieved with dcmtk like any other instance; an archive failure never undoes a signature."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select

from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.archive.models import instances, series_table, studies
from consilium.audit import AuditTrail
from consilium.consult import archiving, attachments, conclusion_dicom, conclusion_pdf
from consilium.consult import files as case_files
from consilium.consult import workflow as wf
from consilium.consult.context import DocumentsConfig, due_hours
from consilium.consult.routes import conclusion_public
from consilium.db import make_engine, migrate
from consilium.settings import Settings
from tests.conftest import CONFIG, CONSILIUM, dcmtk, pydicom_data_dir
from tests.test_consult_workflow import CONSULTANT, REFERRING
from tests.webserver import WebServer, csrf_of

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm, city-hospital
LIMIT = 20_000  # bytes: the test server's attachment limit
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("documents") / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(DATA / "test_files" / "CT_small.dcm")], check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        # the PDF's words in English here (Russian, the default: tests/test_daily_i18n.py)
        "CONSILIUM_UI_DEFAULT_LANGUAGE": "en",
        "CONSILIUM_CONSULT_ATTACHMENT_MAX_MB": str(LIMIT / 2**20)}).start()
    yield server
    server.stop()


def pdf_text(pdf: bytes) -> str:
    """The lines of text an fpdf2 PDF shows (Type0 fonts, Identity-H, ToUnicode maps): just
    enough of a PDF reader to check what the conclusion says (no PDF library is installed)."""
    objects = {int(n): body for n, body in re.findall(rb"(\d+) 0 obj(.*?)endobj", pdf, re.S)}

    def stream(number: int) -> bytes:
        body = objects[number]
        start = re.search(rb"/Length (\d+).*?stream\r?\n", body, re.S)
        assert start is not None
        raw = body[start.end():start.end() + int(start.group(1))]
        return zlib.decompress(raw) if b"/FlateDecode" in body[:start.end()] else raw

    fonts: dict[bytes, dict[int, str]] = {}
    for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", pdf):
        to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)])
        assert to_unicode is not None
        fonts[name] = {int(code, 16): bytes.fromhex(text.decode()).decode("utf-16-be")
                       for code, text in re.findall(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]+)>",
                                                    stream(int(to_unicode.group(1))))}
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    lines = []
    for contents in re.findall(rb"/Contents (\d+) 0 R", pdf):
        font: dict[int, str] = {}
        for name, literal in re.findall(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj",
                                        stream(int(contents)), re.S):
            if name:
                font = fonts[name]
                continue
            raw = re.sub(rb"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), literal,
                         flags=re.S)
            lines.append("".join(font[int.from_bytes(raw[i:i + 2])]
                                 for i in range(0, len(raw), 2)))
    return "\n".join(lines)


def audit_details(web: WebServer, actor: str, action: str) -> list[dict[str, object]]:
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        rows = conn.execute("SELECT detail, patient_id FROM audit_event WHERE actor = ? AND "
                            "action = ? ORDER BY id", (actor, action)).fetchall()
    return [dict(json.loads(detail), patient_id=patient) for detail, patient in rows]


def post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})


def upload(client: httpx.Client, case_id: int, data: bytes, media_type: str,
           filename: str = "file") -> httpx.Response:
    return client.post(f"/api/cases/{case_id}/attachments", params={"filename": filename},
                       content=data, headers={"Content-Type": media_type,
                                              "X-CSRF-Token": csrf_of(client)})


def open_case(referring: httpx.Client, submit: bool = True) -> int:
    case_id = post(referring, "/api/cases", {
        "question": "Узел в лёгком?", "study_uids": [CITY_STUDY],
        "target_institution": "regional-center"}).json()["id"]
    if submit:
        assert post(referring, f"/api/cases/{case_id}/submit", {}).status_code == 200
    return int(case_id)


def test_attachments_round_trip_and_refusals(web: WebServer) -> None:
    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    case_id = open_case(referring)
    made = upload(referring, case_id, PDF, "application/pdf", "Анализы крови.pdf")
    assert made.status_code == 201, made.text
    attachment = made.json()
    assert {k: attachment[k] for k in ("case_id", "filename", "media_type", "size",
                                       "uploaded_by", "uploaded_by_name")} == {
        "case_id": case_id, "filename": "Анализы крови.pdf", "media_type": "application/pdf",
        "size": len(PDF), "uploaded_by": "dev:ivanova", "uploaded_by_name": "Анна Иванова"}
    assert len(attachment["sha256"]) == 64 and attachment["at"]
    image = upload(consultant, case_id, PNG, "image/png", "../../etc/scan.png").json()
    assert image["filename"] == "scan.png"  # no folders in a name
    assert upload(consultant, case_id, JPEG, "image/jpeg", "x.jpg").status_code == 201

    detail = consultant.get(f"/api/cases/{case_id}").json()
    assert [a["filename"] for a in detail["attachments"]] == [
        "Анализы крови.pdf", "scan.png", "x.jpg"]
    got = consultant.get(f"/api/cases/{case_id}/attachments/{attachment['id']}")
    assert got.status_code == 200 and got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%D0%90%D0%BD%D0%B0%D0%BB" in got.headers["content-disposition"]
    history = referring.get(f"/api/cases/{case_id}/history").json()
    assert [e["kind"] for e in history].count("attachment") == 3
    exported = audit_details(web, "dev:kuznetsova", "export")[-1]
    assert exported == {"what": "case attachment", "case": case_id,
                        "attachment": attachment["id"], "sha256": attachment["sha256"],
                        "patient_id": "1CT1"}
    assert audit_details(web, "dev:ivanova", "store")[-1]["what"] == "case attachment"

    mismatch = upload(referring, case_id, PNG, "image/jpeg")
    assert mismatch.status_code == 415 and "FF D8 FF" in mismatch.json()["error"]
    assert upload(referring, case_id, b"plain text", "text/plain").status_code == 415
    assert upload(referring, case_id, b"%PDF" + bytes(10), "application/pdf").status_code == 415
    assert upload(referring, case_id, b"", "application/pdf").status_code == 400
    big = upload(referring, case_id, PDF + bytes(LIMIT), "application/pdf")
    assert big.status_code == 413
    no_csrf = referring.post(f"/api/cases/{case_id}/attachments", content=PDF,
                             headers={"Content-Type": "application/pdf"})
    assert no_csrf.status_code == 403

    outsider = web.login("petrov")  # same hospital, not the requester, not a head
    assert outsider.get(f"/api/cases/{case_id}/attachments/{attachment['id']}"
                        ).status_code == 404
    assert upload(outsider, case_id, PDF, "application/pdf").status_code == 404
    other_case = open_case(referring, submit=False)
    assert referring.get(f"/api/cases/{other_case}/attachments/{attachment['id']}"
                         ).status_code == 404  # an attachment belongs to its own case
    assert web.client().get(f"/api/cases/{case_id}/attachments/{attachment['id']}"
                            ).status_code == 401

    assert post(referring, f"/api/cases/{case_id}/cancel", {}).status_code == 200
    final = upload(referring, case_id, PDF, "application/pdf")
    assert final.status_code == 409 and "cancelled" in final.json()["error"]


def _find_series(web: WebServer, study_uid: str) -> list[Dataset]:
    with tempfile.TemporaryDirectory() as out:
        run = dcmtk("findscu", "-S", "-aet", "FINDSCU", "-aec", "CONSILIUM", "-X",
                    "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study_uid}",
                    "-k", "SeriesInstanceUID", "-k", "Modality", "-k", "SeriesDescription",
                    "-od", out, "127.0.0.1", str(web.dicom_port))
        assert run.returncode == 0, run.stderr
        return [dcmread(p) for p in sorted(Path(out).glob("rsp*.dcm"))]


def _get_instance(web: WebServer, sop_uid: str) -> Dataset:
    with tempfile.TemporaryDirectory() as out:
        run = dcmtk("getscu", "-S", "-aet", "GETSCU", "-aec", "CONSILIUM", "-od", out,
                    "-k", "QueryRetrieveLevel=IMAGE", "-k", f"SOPInstanceUID={sop_uid}",
                    "127.0.0.1", str(web.dicom_port))
        files = list(Path(out).iterdir())
        assert len(files) == 1, run.stderr + run.stdout
        return dcmread(files[0])


def test_signing_writes_the_conclusion_into_the_archive(web: WebServer) -> None:
    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    case_id = open_case(referring)
    post(consultant, f"/api/cases/{case_id}/accept", {})
    signed = post(consultant, f"/api/cases/{case_id}/conclude", {
        "findings": "Спикулированный узел 14 мм.", "impression": "Подозрение на рак.",
        "recommendations": "ПЭТ-КТ, биопсия."})
    assert signed.status_code == 200, signed.text
    first = signed.json()
    assert first["pdf_url"] == f"/api/cases/{case_id}/conclusions/1.pdf"
    assert sorted(a["kind"] for a in first["archived"]) == ["pdf", "sr"]
    assert first["archive_failures"] == []
    assert {a["study_uid"] for a in first["archived"]} == {CITY_STUDY}

    pdf = referring.get(first["pdf_url"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and pdf.content.rstrip().endswith(b"%%EOF")
    assert f"case {case_id}, version 1".encode() in pdf.content  # the document's title
    assert b"/FontFile2" in pdf.content  # the embedded TrueType (DejaVu) font
    text = pdf_text(pdf.content)
    for shown in ("Узел в лёгком?", "Спикулированный узел 14 мм.", "Подозрение на рак.",
                  "ПЭТ-КТ, биопсия.", "CompressedSamples CT1 · ID 1CT1", "Елена Кузнецова",
                  "City Clinical Hospital No. 1", f"Case {case_id} · version 1",
                  first["content_sha256"]):
        assert shown in text, (shown, text)
    assert consultant.get(first["pdf_url"]).content == pdf.content  # rendered once, kept
    assert audit_details(web, "dev:ivanova", "export")[-1] == {
        "what": "conclusion pdf", "case": case_id, "version": 1, "patient_id": "1CT1"}
    stored = audit_details(web, "dev:kuznetsova", "store")[-2:]
    assert [(e["what"], e["patient_id"]) for e in stored] == [
        ("conclusion pdf", "1CT1"), ("conclusion sr", "1CT1")]
    assert referring.get(f"/api/cases/{case_id}/conclusions/7.pdf").status_code == 404
    assert web.login("petrov").get(first["pdf_url"]).status_code == 404

    series = {str(s.Modality): s for s in _find_series(web, CITY_STUDY)}
    assert {"CT", "DOC", "SR"} <= set(series)
    by_kind = {a["kind"]: a for a in first["archived"]}
    assert str(series["DOC"].SeriesInstanceUID) == by_kind["pdf"]["series_uid"]
    assert str(series["SR"].SeriesInstanceUID) == by_kind["sr"]["series_uid"]

    document = _get_instance(web, by_kind["pdf"]["sop_instance_uid"])
    assert document.SOPClassUID == conclusion_dicom.ENCAPSULATED_PDF
    assert document.MIMETypeOfEncapsulatedDocument == "application/pdf"
    length = int(document.EncapsulatedDocumentLength)
    assert document.EncapsulatedDocument[:length] == pdf.content  # byte for byte
    ct = dcmread(DATA / "test_files" / "CT_small.dcm", stop_before_pixels=True)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
        assert str(document.get(keyword)) == str(ct.get(keyword))
    assert document.ConceptNameCodeSequence[0].CodeValue == "11488-4"

    report = _get_instance(web, by_kind["sr"]["sop_instance_uid"])
    assert report.SOPClassUID == conclusion_dicom.BASIC_TEXT_SR and report.Modality == "SR"
    assert (report.CompletionFlag, report.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert report.VerifyingObserverSequence[0].VerifyingObserverName == "Елена Кузнецова"
    texts = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue
             for item in report.ContentSequence}
    assert texts == {"Finding": "Спикулированный узел 14 мм.",
                     "Impression": "Подозрение на рак.", "Recommendation": "ПЭТ-КТ, биопсия."}

    amended = post(consultant, f"/api/cases/{case_id}/amend", {
        "findings": "Спикулированный узел 15 мм.", "impression": "Подозрение на рак.",
        "reason": "размер перемерен"}).json()
    assert amended["version"] == 2 and len(amended["archived"]) == 2
    modalities = [str(s.Modality) for s in _find_series(web, CITY_STUDY)]
    assert modalities.count("DOC") == 2 and modalities.count("SR") == 2
    second_sr = _get_instance(web, next(a["sop_instance_uid"] for a in amended["archived"]
                                        if a["kind"] == "sr"))
    predecessor = second_sr.PredecessorDocumentsSequence[0]
    referenced = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == by_kind["sr"]["sop_instance_uid"]
    detail = referring.get(f"/api/cases/{case_id}").json()
    assert [len(c["archived"]) for c in detail["conclusions"]] == [2, 2]
    assert [c["pdf_url"] for c in detail["conclusions"]] == [
        f"/api/cases/{case_id}/conclusions/{v}.pdf" for v in (1, 2)]


# -- the archive failure policy, on the domain functions -----------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> wf.ConsultContext:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom")
    assert ingest_part10(store, (DATA / "test_files" / "CT_small.dcm").read_bytes(),
                         IngestSource("city-hospital")).ok
    return wf.ConsultContext(engine, AuditTrail(engine), due_hours(Settings()),
                             documents=DocumentsConfig(
                                 store, tmp_path / "attachments",
                                 institution_names={"regional-center": "Regional Center"}))


def _study_file(ctx: wf.ConsultContext) -> Path:
    assert ctx.documents is not None
    with ctx.engine.connect() as conn:
        path = conn.execute(select(instances.c.path)
                            .join(series_table, series_table.c.id == instances.c.series_pk)
                            .join(studies, studies.c.id == series_table.c.study_pk)
                            .where(studies.c.study_uid == CITY_STUDY)).scalar_one()
    return ctx.documents.store.path_of(path)


def test_an_archive_failure_keeps_the_signature_and_is_retried(ctx: wf.ConsultContext) -> None:
    case = wf.open_case(ctx, REFERRING, question="q", study_uids=[CITY_STUDY],
                        target_institution="regional-center")
    assert case.id is not None
    wf.submit(ctx, REFERRING, case.id)
    wf.accept(ctx, CONSULTANT, case.id)
    source = _study_file(ctx)
    hidden = source.with_suffix(".hidden")
    source.rename(hidden)  # the study's only file is gone when the conclusion is signed
    signed = wf.conclude(ctx, CONSULTANT, case.id, findings="f", impression="Норма.")
    assert signed.version == 1  # signed all the same
    rows = archiving.archived_of(ctx, case.id)[signed.id or 0]
    assert [(r.kind, r.status) for r in rows] == [("pdf", "failed"), ("sr", "failed")]
    assert all("no archived instance" in r.reason or "No such file" in r.reason
               for r in rows), [r.reason for r in rows]
    shown = conclusion_public(signed, rows).model_dump()
    assert shown["archived"] == [] and len(shown["archive_failures"]) == 2
    assert archiving.retry_archiving(ctx) == 2  # still failing
    hidden.rename(source)
    assert archiving.retry_archiving(ctx) == 0
    rows = archiving.archived_of(ctx, case.id)[signed.id or 0]
    assert [(r.kind, r.status) for r in rows] == [("pdf", "stored"), ("sr", "stored")]
    assert archiving.retry_archiving(ctx) == 0  # nothing left, and a retry would be a duplicate
    with ctx.engine.connect() as conn:
        modalities = set(conn.execute(select(series_table.c.modality)
                                      .join(studies, studies.c.id == series_table.c.study_pk)
                                      .where(studies.c.study_uid == CITY_STUDY)).scalars())
    assert modalities == {"CT", "DOC", "SR"}
    pdf = conclusion_pdf.conclusion_pdf(ctx, REFERRING, case.id, 1)
    assert pdf.startswith(b"%PDF-")


def test_content_checks() -> None:
    check = attachments.check_content
    assert check(PDF, "application/pdf; charset=binary", 100) == "application/pdf"
    assert check(b"\0" * 128 + b"DICM" + bytes(8), "application/dicom",
                 1000) == "application/dicom"
    assert attachments.clean_filename("C:\\scans\\\x00 a.png") == "a.png"
    assert attachments.clean_filename("..") == "attachment"


def test_temporary_files_of_an_interrupted_upload_are_swept(tmp_path: Path) -> None:
    """A crash between the temporary write and the rename leaves a ``.part`` file, never
    referenced; the next start removes it once it is older than any live write could be."""
    files = tmp_path / "attachments"
    files.mkdir()
    stale = files / ".abc.123.456.part"
    fresh = files / ".def.123.789.part"
    kept = files / ("0" * 64)  # a stored attachment (named by its hash)
    for path in (stale, fresh, kept):
        path.write_bytes(b"x")
    old = time.time() - case_files.PARTIAL_MAX_AGE - 60
    os.utime(stale, (old, old))
    os.utime(kept, (old, old))
    assert case_files.sweep_partial_files(files) == 1
    assert not stale.exists() and fresh.exists() and kept.exists()
    assert case_files.sweep_partial_files(tmp_path / "missing") == 0
