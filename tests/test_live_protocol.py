"""The consilium's protocol and replay end to end: a real ``consilium serve``, clinicians logged
in through the demo identity provider, python-socketio participants on ``/consilium``, dcmtk's
findscu and getscu against the archive.

The case: a city referring doctor's (ivanova, City Clinical Hospital No. 1) CT sent to the
regional center. She chairs; kuznetsova (Regional Diagnostic Center) is a party of the case;
petrov (a city consultant, no party) is invited; orlov (regional, no party) is nobody's.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from consilium.live.sequencer import replay
from consilium.live.state import State, clone
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import CONFIG, CONSILIUM, dcmtk
from tests.live_client import Participant
from tests.test_consult_documents import pdf_text
from tests.webserver import WebServer, csrf_of

STUDY = StudySpec(PatientSpec("PROT-001", "Протоколов^Пётр"), "20261205", accession="PR1")


class Recorder(Participant):
    """A participant that keeps its state after every change it applied: what it lived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lived: dict[int, State] = {}
        super().__init__(*args, **kwargs)

    def _take(self, change: dict[str, Any]) -> None:
        super()._take(change)
        assert self.state is not None
        self.lived[int(self.state["seq"])] = clone(self.state)

    def join(self, session_id: str, last_seq: int | None = None) -> dict[str, Any]:
        answer = super().join(session_id, last_seq)
        with self.arrived:
            assert self.state is not None
            self.lived[int(self.state["seq"])] = clone(self.state)
        return answer


@dataclass
class World:
    web: WebServer
    study_uid: str
    series_uid: str
    case_id: int
    users: dict[str, httpx.Client]
    sop_uid: str  # the first slice

    def post(self, who: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        client = self.users[who]
        return client.post(path, json=body or {}, headers={"X-CSRF-Token": csrf_of(client)})

    def put(self, who: str, path: str, body: dict[str, Any]) -> httpx.Response:
        client = self.users[who]
        return client.put(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})

    def participant(self, who: str) -> Recorder:
        return Recorder(self.web.url, self.users[who], who)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("protocol")
    paths = write_ct_series(STUDY, root / "ct", slices=12, rows=32, columns=32,
                            uid_seed="protocol-ct")
    first = dcmread(paths[0], stop_before_pixels=True)
    data_dir = root / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(root / "ct")], check=True, capture_output=True)
    web = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    try:
        users = {name: web.login(name) for name in ("ivanova", "petrov", "kuznetsova", "orlov")}
        world = World(web, str(first.StudyInstanceUID), str(first.SeriesInstanceUID), 0, users,
                      str(first.SOPInstanceUID))
        case = world.post("ivanova", "/api/cases", {
            "question": "Тактика лечения?", "study_uids": [world.study_uid],
            "target_institution": "regional-center"})
        assert case.status_code == 200, case.text
        world.case_id = case.json()["id"]
        assert world.post("ivanova", f"/api/cases/{world.case_id}/submit").status_code == 200
        yield world
    finally:
        web.stop()


def _session(world: World) -> str:
    answer = world.post("ivanova", f"/api/cases/{world.case_id}/consilia",
                        {"title": "Онкоконсилиум", "invitees": ["dev:petrov"]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


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


def test_the_protocol_written_signed_by_two_institutions_and_archived(world: World) -> None:
    sid = _session(world)
    base = f"/api/consilia/{sid}/protocol"
    people = [world.participant(n) for n in ("ivanova", "kuznetsova", "petrov")]
    chair, _, petrov = people
    try:
        for p in people:
            assert p.join(sid)["ok"]
        chair.wait(lambda p: p.state is not None and sum(
            m["online"] for m in p.state["members"].values()) == 3)
        # the chair holds the pen first; what she types reaches everyone before it is saved
        assert chair.call("protocol:draft", {"session_id": sid, "version": 0,
                                             "text": "Рекомендовано"})["ok"]
        refused = petrov.call("protocol:draft", {"session_id": sid, "version": 0, "text": "x"})
        assert (refused["ok"], refused["status"], refused["reason"]) == (False, 403,
                                                                        "not-editor")
        for p in people:
            p.wait(lambda q: q.state is not None and (q.state.get("protocol") or {}).get(
                "draft") is not None and q.state["protocol"]["draft"]["text"] == "Рекомендовано")
        saved = world.put("ivanova", base, {"text": "Рекомендовано: биопсия.", "version": 0})
        assert saved.status_code == 200, saved.text
        assert (saved.json()["version"], saved.json()["editor"]) == (1, "dev:ivanova")
        assert world.put("petrov", base, {"text": "нет", "version": 1}).status_code == 403
        # the pen to the regional consultant: her save is version 2; a stale one is refused
        pen = world.post("ivanova", f"{base}/pen", {"subject": "dev:kuznetsova"})
        assert pen.status_code == 200 and pen.json()["editor"] == "dev:kuznetsova", pen.text
        assert world.put("ivanova", base, {"text": "x", "version": 1}).status_code == 403
        decision = "Рекомендовано: биопсия под КТ-контролем, затем химиотерапия."
        assert world.put("kuznetsova", base, {"text": decision, "version": 1}).status_code == 200
        stale = world.put("kuznetsova", base, {"text": "старое", "version": 1})
        assert stale.status_code == 409, stale.text
        assert world.post("kuznetsova", f"{base}/submit", {"version": 2}).status_code == 403
        assert world.post("ivanova", f"{base}/sign", {"version": 2, "agree": True}
                          ).status_code == 409  # not put to signing yet
        submitted = world.post("ivanova", f"{base}/submit", {"version": 2})
        assert submitted.status_code == 200 and submitted.json()["status"] == "signing"
        assert world.put("kuznetsova", base, {"text": "x", "version": 2}).status_code == 409
        assert world.post("ivanova", f"{base}/close").status_code == 409  # nobody signed
        # signatures: two institutions agree, one dissents with a text
        for who in ("ivanova", "kuznetsova"):
            signed = world.post(who, f"{base}/sign", {"version": 2, "agree": True})
            assert signed.status_code == 200, signed.text
        assert world.post("petrov", f"{base}/sign", {"version": 2, "agree": False}
                          ).status_code == 400  # a dissent says why
        dissent = "Против: сначала ПЭТ-КТ."
        assert world.post("petrov", f"{base}/sign", {"version": 2, "agree": False,
                                                     "dissent": dissent}).status_code == 200
        outsider = world.post("orlov", f"{base}/sign", {"version": 2, "agree": True})
        nothing = world.post("orlov", "/api/consilia/NoSuchSession000000/protocol/sign",
                             {"version": 2, "agree": True})
        assert outsider.status_code == nothing.status_code == 404
        assert outsider.json() == nothing.json()
        assert world.post("kuznetsova", f"{base}/close").status_code == 403
        # a key image and a measurement of the case go with the protocol into the archive
        image = {"study_uid": world.study_uid, "series_uid": world.series_uid,
                 "sop_instance_uid": world.sop_uid}
        key = world.put("ivanova", f"/api/cases/{world.case_id}/key-images",
                        {**image, "caption": "узел"})
        assert key.status_code == 200, key.text
        mark = world.put("kuznetsova", f"/api/cases/{world.case_id}/marks/m1", {
            "id": "m1", "kind": "length", "image": image, "points": [[4.0, 5.0], [20.0, 5.0]],
            "measured": {"length_mm": 16.0}, "text": "узел"})
        assert mark.status_code == 200, mark.text
        closed = world.post("ivanova", f"{base}/close")
        assert closed.status_code == 200, closed.text
        protocol = closed.json()
        assert protocol["status"] == "closed" and protocol["version"] == 2
        assert [(s["subject"], s["institution"], s["agree"], s["dissent"])
                for s in protocol["signatures"]] == [
            ("dev:ivanova", "city-hospital", True, ""),
            ("dev:kuznetsova", "regional-center", True, ""),
            ("dev:petrov", "city-hospital", False, dissent)]
        assert sorted((a["kind"], a["status"]) for a in protocol["archived"]) == [
            ("kos", "stored"), ("mr", "stored"), ("pdf", "stored"), ("pr1", "stored"),
            ("sr", "stored")]
        assert [v["author"] for v in protocol["versions"]] == ["dev:ivanova", "dev:kuznetsova"]
        texts = world.users["petrov"].get(f"{base}/versions").json()["versions"]
        assert [v["text"] for v in texts] == ["Рекомендовано: биопсия.", decision]

        # everyone's state says the same, and the record folds to it
        last = world.users["ivanova"].get(f"/api/consilia/{sid}").json()["last_seq"]
        for p in people:
            p.wait_seq(last)
        states = [p.current() for p in people]
        assert states[0] == states[1] == states[2]
        folded = states[0]["protocol"]
        assert (folded["status"], folded["version"], folded["text"], folded["editor"]) == (
            "closed", 2, decision, "dev:kuznetsova")
        assert {s: (v["agree"], v["dissent"]) for s, v in folded["signatures"].items()} == {
            "dev:ivanova": (True, ""), "dev:kuznetsova": (True, ""),
            "dev:petrov": (False, dissent)}
        record = world.users["ivanova"].get(f"/api/consilia/{sid}/changes").json()["changes"]
        assert replay(record, sid) == states[0]
    finally:
        for p in people:
            p.disconnect()

    # the PDF: attached to the case, with participants, institutions, decision, dissent
    case = world.users["kuznetsova"].get(f"/api/cases/{world.case_id}").json()
    attached = [a for a in case["attachments"] if a["id"] == protocol["attachment_id"]]
    assert len(attached) == 1 and attached[0]["media_type"] == "application/pdf"
    pdf = world.users["petrov"].get(protocol["pdf_url"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    download = world.users["ivanova"].get(
        f"/api/cases/{world.case_id}/attachments/{protocol['attachment_id']}")
    assert download.content == pdf.content
    text = pdf_text(pdf.content)
    for shown in ("Протокол консилиума", "Онкоконсилиум", "Тактика лечения?", decision,
                  "Анна Иванова", "Елена Кузнецова", "Pavel Petrov",
                  "City Clinical Hospital No. 1", "Regional Diagnostic Center", dissent,
                  "Особое мнение: Pavel Petrov", "Протоколов Пётр", protocol["content_sha256"]):
        assert shown in text, (shown, text)
    assert world.users["orlov"].get(protocol["pdf_url"]).status_code == 404
    history = world.users["ivanova"].get(f"/api/cases/{world.case_id}/history").json()
    events = [json.loads(e["detail"]) for e in history if e["kind"] == "consilium"]
    assert [(e["session"], e["version"], e["agreed"], e["dissented"], e["attachment"])
            for e in events if e["event"] == "protocol"] == [
        (sid, 2, 2, 1, protocol["attachment_id"])]

    # the archive: findscu finds both series beside the CT, getscu brings the SR back
    series = {str(s.SeriesInstanceUID): s for s in _find_series(world.web, world.study_uid)}
    by_kind = {a["kind"]: a for a in protocol["archived"]}
    assert str(series[by_kind["pdf"]["series_uid"]].Modality) == "DOC"
    assert str(series[by_kind["sr"]["series_uid"]].Modality) == "SR"
    assert str(series[by_kind["pdf"]["series_uid"]].SeriesDescription) == "Consilium protocol v2"
    document = _get_instance(world.web, by_kind["pdf"]["sop_instance_uid"])
    length = int(document.EncapsulatedDocumentLength)
    assert document.EncapsulatedDocument[:length] == pdf.content  # byte for byte
    assert str(document.PatientID) == "PROT-001"
    report = _get_instance(world.web, by_kind["sr"]["sop_instance_uid"])
    assert report.VerificationFlag == "VERIFIED"
    assert [(str(o.VerifyingObserverName), o.VerifyingOrganization)
            for o in report.VerifyingObserverSequence] == [
        ("Анна Иванова", "City Clinical Hospital No. 1"),
        ("Елена Кузнецова", "Regional Diagnostic Center")]
    content = [(i.ConceptNameCodeSequence[0].CodeMeaning, i.get("TextValue", None)
                or str(i.get("PersonName", ""))) for i in report.ContentSequence]
    assert ("Conclusion", decision) in content
    assert ("Comment", f"Dissent: Pavel Petrov, City Clinical Hospital No. 1: {dissent}"
            ) in content
    assert {v for k, v in content if k == "Person Observer Name"} == {
        "Анна Иванова", "Елена Кузнецова", "Pavel Petrov"}

    # and the key image, the measurement and its graphic as KOS, TID 1500 SR and GSPS
    assert {str(series[by_kind[k]["series_uid"]].Modality) for k in ("kos", "mr", "pr1")} == {
        "KO", "SR", "PR"}
    kos = _get_instance(world.web, by_kind["kos"]["sop_instance_uid"])
    referenced = [r.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                  for item in kos.ContentSequence if item.ValueType == "IMAGE"
                  for r in [item]]
    assert referenced == [world.sop_uid]
    archived = world.users["kuznetsova"].get(
        f"/api/archive/studies/{world.study_uid}/marks").json()
    lengths = [m for m in archived["marks"] if m["source"] == "sr"]
    assert [(m["kind"], m["image"]["sop_instance_uid"], m["points"], m["measured"]["length_mm"])
            for m in lengths] == [("length", world.sop_uid, [[4.0, 5.0], [20.0, 5.0]], 16.0)]
    assert [k["image"]["sop_instance_uid"] for k in archived["key_images"]] == [world.sop_uid]


def _stack(world: World, index: int, center: float = 40.0) -> dict[str, Any]:
    return {"layout": "1x1", "viewports": [{"study_uid": world.study_uid,
                                             "series_uid": world.series_uid,
                                             "image_index": index,
                                             "voi": {"center": center, "width": 400.0}}]}


def test_replay_gives_the_state_every_participant_had_at_each_step(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = _session(world)
    people = [world.participant(n) for n in ("ivanova", "kuznetsova", "petrov")]
    chair, kuznetsova, petrov = people
    try:
        for p in people:
            assert p.join(sid)["ok"]
        chair.wait(lambda p: p.state is not None and sum(
            m["online"] for m in p.state["members"].values()) == 3)

        def settle(shows: Callable[[State], bool] = lambda _state: True) -> None:
            """Everyone has every durable change and what the last coalesced one shows (a
            view change or a draft gets its seq when it is broadcast, which on a loaded
            machine can come after a durable change made later)."""
            seq = world.users["ivanova"].get(f"/api/consilia/{sid}").json()["last_seq"]
            for p in people:
                p.wait(lambda p: p.state is not None and p.state["seq"] >= seq
                       and shows(p.state))

        def image(index: int) -> Callable[[State], bool]:
            return lambda state: state["view"]["stack"] is not None and \
                state["view"]["stack"]["viewports"][0]["image_index"] == index

        for i in range(6):  # what was shown: a scroll, then a window
            assert chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                              "state": _stack(world, i)})["ok"]
            settle(image(i))
        assert chair.call("view:change", {"session_id": sid, "kind": "view.stack",
                                          "state": _stack(world, 5, 300.0), "final": True})["ok"]
        petrov.send("pointer:move", {"session_id": sid, "series_uid": world.series_uid,
                                     "x": 10.0, "y": 12.0})
        assert kuznetsova.call("chat:send", {"session_id": sid, "text": "Узел 14 мм"})["ok"]
        assert petrov.call("hand:raise", {"session_id": sid})["ok"]
        assert chair.call("control:grant", {"session_id": sid, "subject": "dev:petrov"})["ok"]
        settle()
        for i in (7, 8):
            assert petrov.call("view:change", {"session_id": sid, "kind": "view.stack",
                                               "state": _stack(world, i)})["ok"]
            settle(image(i))
        assert chair.call("protocol:draft", {"session_id": sid, "version": 0,
                                             "text": "Биопсия"})["ok"]
        settle(lambda state: ((state.get("protocol") or {}).get("draft") or {}).get("text")
               == "Биопсия")
        base = f"/api/consilia/{sid}/protocol"
        assert world.put("ivanova", base, {"text": "Биопсия.", "version": 0}).status_code == 200
        assert chair.call("control:take", {"session_id": sid})["ok"]
        kuznetsova.disconnect()
        settle_people = [chair, petrov]
        seq = world.users["ivanova"].get(f"/api/consilia/{sid}").json()["last_seq"]
        for p in settle_people:
            p.wait_seq(seq)
        assert chair.call("session:end", {"session_id": sid})["ok"]
        last = world.users["ivanova"].get(f"/api/consilia/{sid}").json()["last_seq"]
        for p in settle_people:
            p.wait_seq(last)
    finally:
        for p in people:
            p.disconnect()

    # the server's state at each seq is what each participant had after applying it
    lived = {seq: state for p in people for seq, state in p.lived.items()}
    # (view changes sent within one coalescing window share a seq on a loaded machine)
    assert len(lived) >= 15 and max(lived) == last
    for p in people:
        for seq, state in p.lived.items():
            answer = world.users["petrov"].get(f"/api/consilia/{sid}/replay/state",
                                               params={"seq": seq})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"seq": seq, "state": state}, (p.name, seq)
    record = world.users["ivanova"].get(f"/api/consilia/{sid}/changes").json()["changes"]
    assert [c["seq"] for c in record] == list(range(1, last + 1))

    # the same from checkpoints: every 4 changes, asked backwards and again
    from consilium.db import make_engine
    from consilium.live import replay as replay_module

    monkeypatch.setattr(replay_module, "CHECKPOINT_EVERY", 4)
    replays = replay_module.Replays(make_engine(
        f"sqlite:///{world.web.data_dir / 'consilium.db'}"))
    for seq in [*sorted(lived, reverse=True), *sorted(lived)]:
        assert replays.state_at(sid, seq) == lived[seq], seq
    assert [s for s, _ in replays._of(sid).points] == [s for s in range(4, last + 1, 4)]

    # the timeline: what was shown, drawn and said, in order, with who did it
    replay_answer = world.users["kuznetsova"].get(f"/api/consilia/{sid}/replay").json()
    steps = [(e["kind"], e["name"]) for e in replay_answer["timeline"]]
    shown = [e for e in replay_answer["timeline"] if e["kind"] == "view.stack"]
    assert [(e["name"], e["what"]["image_index"]) for e in shown] == [
        ("Анна Иванова", 5), ("Pavel Petrov", 8)]  # a run of one presenter's changes is one
    assert shown[0]["what"]["voi"] == {"center": 300.0, "width": 400.0}
    assert shown[0]["until"] > shown[0]["seq"]
    assert ("chat.message", "Елена Кузнецова") in steps
    assert ("protocol.saved", "Анна Иванова") in steps
    assert ("pointer", "Pavel Petrov") not in steps
    assert steps[-1] == ("session.ended", "Анна Иванова")
    assert [e["seq"] for e in replay_answer["timeline"]] == sorted(
        e["seq"] for e in replay_answer["timeline"])
    assert world.users["orlov"].get(f"/api/consilia/{sid}/replay").status_code == 404
    assert world.users["orlov"].get(f"/api/consilia/{sid}/replay/state",
                                    params={"seq": 3}).status_code == 404
