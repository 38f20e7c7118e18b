"""A case's annotations and key images over HTTP: kept with the case, attributed and coloured by
author, read by the case's parties, changed by their author only, refused to others as a case
that does not exist; the key images a case kept as SOP UIDs move into their table with series
and instance number (migration 0090)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session, SQLModel, select
from starlette.testclient import TestClient

from consilium.audit import AuditEvent
from consilium.consult.annotations import author_color, list_key_images, list_marks
from consilium.db import alembic_config, make_engine
from tests.inprocess import CITY_STUDY, InProcess, in_process

CITY_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
CITY_IMAGE = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
MR_IMAGE_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, int]]:
    with in_process(tmp_path_factory.mktemp("marks") / "var") as app:
        ivanova = app.login("ivanova")
        made = ivanova.post("/api/cases", json={
            "question": "Очаг в печени?", "study_uids": [CITY_STUDY],
            "target_institution": "regional-center", "key_images": {CITY_STUDY: [CITY_IMAGE]}})
        assert made.status_code == 200, made.text
        case_id = made.json()["id"]
        assert ivanova.post(f"/api/cases/{case_id}/submit",
                            json={"version": made.json()["version"]}).status_code == 200
        yield app, case_id


def length(mark_id: str, points: list[list[float]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": mark_id, "kind": "length",
            "image": {"study_uid": CITY_STUDY, "series_uid": CITY_SERIES,
                      "sop_instance_uid": CITY_IMAGE},
            "points": points or [[10.0, 12.5], [70.0, 80.0]],
            "measured": {"length_mm": 84.2}, **extra}


def put(client: TestClient, case_id: int, mark: dict[str, Any]) -> Any:
    return client.put(f"/api/cases/{case_id}/marks/{mark['id']}", json=mark)


def test_a_mark_is_kept_attributed_and_read_by_the_parties(world: tuple[InProcess, int]
                                                           ) -> None:
    app, case_id = world
    ivanova, kuznetsova = app.login("ivanova"), app.login("kuznetsova")
    answer = put(ivanova, case_id, length("m-1", author_subject="dev:someone-else",
                                          color="#000000", text="очаг"))
    assert answer.status_code == 200, answer.text
    kept = answer.json()
    # the author and colour are the server's, whatever the client said
    assert kept["author_subject"] == "dev:ivanova"
    assert kept["author_name"] == "Анна Иванова"
    assert kept["author_institution"] == "city-hospital"
    assert kept["color"] == author_color("dev:ivanova") != "#000000"
    assert kept["image"]["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"  # from the index
    seen = kuznetsova.get(f"/api/cases/{case_id}/marks")
    assert seen.status_code == 200
    (mark,) = [m for m in seen.json()["marks"] if m["id"] == "m-1"]
    assert mark["measured"]["length_mm"] == 84.2
    assert mark["points"] == [[10.0, 12.5], [70.0, 80.0]]
    assert mark["text"] == "очаг"
    # the system's reader (archiving, the protocol) sees the same
    with Session(app.runtime.engine) as db:
        assert [m.id for m in list_marks(db, case_id)] == [m["id"] for m in seen.json()["marks"]]
    assert [m.id for m in list_marks(app.runtime.engine, case_id)] == \
        [m["id"] for m in seen.json()["marks"]]
    app.runtime.audit.flush()
    with Session(app.runtime.engine) as db:
        events = db.exec(select(AuditEvent).where(AuditEvent.actor == "dev:ivanova",
                                                  AuditEvent.action == "store")).all()
    assert any('"case mark"' in e.detail and '"m-1"' in e.detail for e in events)


def test_only_the_author_changes_or_deletes_a_mark(world: tuple[InProcess, int]) -> None:
    app, case_id = world
    ivanova, kuznetsova = app.login("ivanova"), app.login("kuznetsova")
    assert put(kuznetsova, case_id, length("k-1")).status_code == 200
    taken = put(ivanova, case_id, length("k-1", [[1.0, 1.0], [2.0, 2.0]]))
    assert taken.status_code == 403
    assert ivanova.delete(f"/api/cases/{case_id}/marks/k-1").status_code == 403
    # the author's later write wins
    moved = put(kuznetsova, case_id, length("k-1", [[5.0, 5.0], [50.0, 60.0]]))
    assert moved.status_code == 200
    marks = {m["id"]: m for m in kuznetsova.get(f"/api/cases/{case_id}/marks").json()["marks"]}
    assert marks["k-1"]["points"] == [[5.0, 5.0], [50.0, 60.0]]
    assert marks["k-1"]["author_subject"] == "dev:kuznetsova"
    assert kuznetsova.delete(f"/api/cases/{case_id}/marks/k-1").status_code == 200
    after = ivanova.get(f"/api/cases/{case_id}/marks").json()["marks"]
    assert "k-1" not in {m["id"] for m in after}
    assert kuznetsova.delete(f"/api/cases/{case_id}/marks/k-1").status_code == 404


def test_strangers_get_what_a_missing_case_gets(world: tuple[InProcess, int]) -> None:
    app, case_id = world
    orlov = app.login("orlov")  # the target institution's referring doctor: no party
    petrov = app.login("petrov")  # the requesting institution's consultant: no party
    for client in (orlov, petrov):
        for path in (f"/api/cases/{case_id}/marks", f"/api/cases/{case_id}/key-images"):
            foreign, missing = client.get(path), client.get(path.replace(str(case_id), "99999"))
            assert (foreign.status_code, foreign.json()) == (missing.status_code,
                                                             missing.json())
            assert foreign.status_code == 404
        assert put(client, case_id, length("x-1")).status_code == 404
    assert app.anonymous().get(f"/api/cases/{case_id}/marks").status_code == 401


@pytest.mark.parametrize(("mark", "says"), [
    (length("bad-1", [[1.0, 2.0]]), "needs 2 points"),
    ({**length("bad-2"), "image": {"study_uid": MR_IMAGE_STUDY, "series_uid": CITY_SERIES,
                                   "sop_instance_uid": CITY_IMAGE}}, "is not one of the case's"),
    ({**length("bad-3"), "image": {"study_uid": CITY_STUDY, "series_uid": CITY_SERIES,
                                   "sop_instance_uid": "1.2.3.4"}}, "is not one of the case's"),
    ({**length("bad-4"), "image": {"study_uid": CITY_STUDY, "series_uid": CITY_SERIES,
                                   "sop_instance_uid": CITY_IMAGE, "frame": 2}}, "frame(s)"),
    ({"id": "bad-5", "kind": "length", "points3d": [[0, 0, 0], [1, 1, 1]]}, "a mark is on"),
    ({"id": "bad-6", "kind": "length", "points3d": [[0, 0, 0], [1, 1, 1]],
      "series_uid": "1.2.3", "frame_of_reference_uid": "1.2"}, "not one of the case's"),
    ({**length("bad-7"), "kind": "circle"}, "kind"),
    ({**length("bad-8"), "points": [[1.0, "x"], [2.0, 3.0]]}, "points"),
])
def test_a_mark_that_is_not_on_the_case_s_images_is_refused(
        world: tuple[InProcess, int], mark: dict[str, Any], says: str) -> None:
    app, case_id = world
    answer = put(app.login("ivanova"), case_id, mark)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert mark["id"] not in {m.id for m in list_marks(app.runtime.engine, case_id)}


def test_a_world_mark_in_a_series_volume(world: tuple[InProcess, int]) -> None:
    app, case_id = world
    mark = {"id": "w-1", "kind": "length", "series_uid": CITY_SERIES,
            "frame_of_reference_uid": "1.3.6.1.4.1.5962.1.4.1.1.20040119072730.12322",
            "points3d": [[-10.0, 5.0, 3.0], [20.0, 5.0, 3.0]], "measured": {"length_mm": 30.0}}
    assert put(app.login("kuznetsova"), case_id, mark).status_code == 200
    (kept,) = [m for m in list_marks(app.runtime.engine, case_id) if m.id == "w-1"]
    assert kept.points3d == [(-10.0, 5.0, 3.0), (20.0, 5.0, 3.0)] and kept.image is None


def test_mark_path_and_body_name_the_same_mark(world: tuple[InProcess, int]) -> None:
    app, case_id = world
    answer = app.login("ivanova").put(f"/api/cases/{case_id}/marks/other", json=length("m-9"))
    assert answer.status_code == 400


def test_key_images_have_series_slice_frame_and_caption(world: tuple[InProcess, int]) -> None:
    app, case_id = world
    ivanova, kuznetsova = app.login("ivanova"), app.login("kuznetsova")
    detail = kuznetsova.get(f"/api/cases/{case_id}").json()
    assert detail["studies"][0]["key_images"] == [CITY_IMAGE]  # as before
    (first,) = detail["key_images"]
    assert first["image"] == {"study_uid": CITY_STUDY, "series_uid": CITY_SERIES,
                              "sop_instance_uid": CITY_IMAGE,
                              "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "frame": None}
    assert first["instance_number"] == 1
    assert first["author_subject"] == "dev:ivanova"
    # the consultant captions the image again: it is the requester's key image
    body = {"study_uid": CITY_STUDY, "series_uid": CITY_SERIES, "sop_instance_uid": CITY_IMAGE,
            "caption": "вот он"}
    assert kuznetsova.put(f"/api/cases/{case_id}/key-images", json=body).status_code == 403
    captioned = ivanova.put(f"/api/cases/{case_id}/key-images", json=body)
    assert captioned.status_code == 200, captioned.text
    assert captioned.json()["caption"] == "вот он"
    assert kuznetsova.put(f"/api/cases/{case_id}/key-images",
                          json={**body, "frame": 3}).status_code == 400  # single frame
    listed = kuznetsova.get(f"/api/cases/{case_id}/key-images").json()["key_images"]
    assert [(k["image"]["sop_instance_uid"], k["caption"]) for k in listed] == [
        (CITY_IMAGE, "вот он")]
    assert [k.caption for k in list_key_images(app.runtime.engine, case_id)] == ["вот он"]
    gone = kuznetsova.delete(f"/api/cases/{case_id}/key-images",
                             params={"sop_instance_uid": CITY_IMAGE})
    assert gone.status_code == 403
    assert ivanova.delete(f"/api/cases/{case_id}/key-images",
                          params={"sop_instance_uid": CITY_IMAGE}).status_code == 200
    assert kuznetsova.get(f"/api/cases/{case_id}").json()["studies"][0]["key_images"] == []
    again = kuznetsova.put(f"/api/cases/{case_id}/key-images", json={**body, "caption": ""})
    assert again.status_code == 200 and again.json()["author_subject"] == "dev:kuznetsova"


def test_migration_moves_the_kept_key_images(tmp_path: Path) -> None:
    """A case of the schema before 0090 (SOP UIDs joined in consult_case_study) keeps its key
    images after the upgrade, now with their series and instance number, and back."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0080")
    stamp = datetime(2026, 12, 1, tzinfo=UTC)
    tables = SQLModel.metadata.tables  # the models of the tables 0090 leaves as they are
    with engine.begin() as db:
        db.execute(sa.insert(tables["patient"]).values(
            id=1, patient_id="P1", patient_name="A^B", institution_id="city-hospital"))
        db.execute(sa.insert(tables["study"]).values(
            id=1, study_uid="1.2.1", patient_pk=1, institution_id="city-hospital"))
        db.execute(sa.insert(tables["series"]).values(
            id=1, series_uid="1.2.1.1", study_pk=1, series_number=2, description="Abdomen"))
        db.execute(sa.insert(tables["instance"]).values(
            id=1, sop_uid="1.2.1.1.7", series_pk=1, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            instance_number=7, transfer_syntax_uid="1.2.840.10008.1.2.1", path="x",
            size_bytes=1, sha256="h"))
        db.execute(sa.insert(tables["consult_case"]).values(
            id=1, status="draft", priority="routine", question="q", patient_id="P1",
            patient_name="A^B", requester_subject="dev:ivanova", requester_name="Анна",
            requester_institution="city-hospital", target_institution="regional-center",
            created_at=stamp))
        db.execute(sa.text("INSERT INTO consult_case_study (case_id, study_uid, institution_id, "
                           "key_images) VALUES (1, '1.2.1', 'city-hospital', "
                           "'1.2.1.1.7\\1.2.1.1.404')"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0090")
    images = list_key_images(engine, 1)
    assert [(k.image.sop_instance_uid, k.image.series_uid, k.instance_number,
             k.series_description, k.author_subject) for k in images] == [
        ("1.2.1.1.7", "1.2.1.1", 7, "Abdomen", "dev:ivanova"),
        ("1.2.1.1.404", "", None, "", "dev:ivanova")]  # no longer in the index: kept as it was
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0080")
    with engine.connect() as db:
        assert db.execute(sa.text("SELECT key_images FROM consult_case_study")).scalar_one() == \
            "1.2.1.1.7\\1.2.1.1.404"
