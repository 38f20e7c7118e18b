"""The ownership rule of ingest: an instance joins a study only of the sender's institution and
the same patient, a series only of that study; a SOP Instance UID stored for one institution is
never overwritten nor acknowledged to another. Checked on the ingest function (with a fresh
row cache and a warm one, one instance at a time and several in one group-commit round); the
DIMSE and STOW-RS ways in are in :mod:`tests.test_ingest_ownership_e2e`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from consilium import synthetic
from consilium.archive import storage
from consilium.archive.dicomfile import build_file_meta, check_structure
from consilium.archive.ingest import (
    ArchiveStore,
    IngestSource,
    Outcome,
    Refusal,
    _commit_round,
    _Written,
    ingest_dataset,
    ingest_part10,
)
from consilium.archive.models import instances, series_table, studies
from consilium.audit import AuditEvent, AuditTrail
from consilium.db import make_engine, migrate
from consilium.settings import DuplicatePolicy

CITY = IngestSource("city-hospital", "CITY_CT1", "dimse")
CITY_PACS = IngestSource("city-hospital", "CITY_PACS", "dimse")
REGIONAL = IngestSource("regional-center", "REG_CT1", "dimse")


@pytest.fixture
def store(tmp_path: Path) -> ArchiveStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    return ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom", audit=AuditTrail(engine))


def ct(study: str, series: str, patient: str = "P-1", issuer: str = "", name: str = "Ivanov^Ivan",
       sop: str | None = None, value: int = 0) -> Dataset:
    return synthetic.image(StudyInstanceUID=study, SeriesInstanceUID=series, PatientID=patient,
                           IssuerOfPatientID=issuer or None, PatientName=name,
                           SOPInstanceUID=sop or generate_uid(), pixels=bytes([value]) * 32)


def dataset_bytes(ds: Dataset) -> bytes:
    return synthetic.dataset_bytes(ds)


def send(store: ArchiveStore, ds: Dataset, source: IngestSource) -> tuple[Outcome, Refusal | None,
                                                                           str]:
    """As C-STORE does: the dataset bytes with the request's UIDs, the file meta made here."""
    result = ingest_dataset(store, dataset_bytes(ds), ExplicitVRLittleEndian, CTImageStorage,
                            str(ds.SOPInstanceUID), source)
    return result.outcome, result.refusal, result.reason


def counts(store: ArchiveStore) -> dict[str, object]:
    with store.engine.connect() as conn:
        return {
            "instances": conn.execute(select(func.count()).select_from(instances)).scalar_one(),
            "series": conn.execute(select(func.count()).select_from(series_table)).scalar_one(),
            "studies": conn.execute(select(studies.c.study_uid, studies.c.institution_id,
                                           studies.c.num_instances)).all(),
            "files": sorted(p.name for p in store.storage_dir.glob("??/*/*.dcm")),
        }


def fresh(store: ArchiveStore) -> ArchiveStore:
    """Another process on the same archive: nothing cached."""
    return ArchiveStore(engine=store.engine, storage_dir=store.storage_dir, audit=store.audit)


def denied_events(store: ArchiveStore) -> list[AuditEvent]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(AuditEvent).where(AuditEvent.action == "denied")).all()
    return [AuditEvent.model_validate(r._mapping) for r in rows]


@pytest.mark.parametrize("cached", [True, False], ids=["warm-cache", "fresh-process"])
def test_another_institution_cannot_add_to_a_study(store: ArchiveStore, cached: bool) -> None:
    study, series = generate_uid(), generate_uid()
    assert send(store, ct(study, series), CITY)[0] is Outcome.STORED
    before = counts(store)
    other = store if cached else fresh(store)
    # the same study and series UIDs from another hospital's modality, another patient
    outcome, refusal, reason = send(other, ct(study, series, patient="R-9", name="Petrov^Petr"),
                                    REGIONAL)
    assert (outcome, refusal) == (Outcome.REFUSED, Refusal.FOREIGN)
    assert "city" not in reason and "Ivanov" not in reason and len(reason) <= 64
    # same patient ID too, new series: still another institution's study
    outcome, refusal, _ = send(other, ct(study, generate_uid(), name="Petrov^Petr"), REGIONAL)
    assert (outcome, refusal) == (Outcome.REFUSED, Refusal.FOREIGN)
    assert counts(store) == before
    [first, second] = denied_events(store)
    assert first.actor == "AE:REG_CT1" and first.actor_institution == "regional-center"
    assert first.outcome == "denied" and first.study_uid == study
    # the record names what the sender sent, never the owner's patient
    assert first.patient_id == "R-9" and first.patient_name == "Petrov^Petr"
    assert "Ivanov" not in first.model_dump_json() and "Ivanov" not in second.model_dump_json()
    assert json.loads(first.detail)["sop_instance_uid"]


@pytest.mark.parametrize("cached", [True, False], ids=["warm-cache", "fresh-process"])
def test_same_institution_other_patient_or_issuer_is_refused(store: ArchiveStore,
                                                             cached: bool) -> None:
    study, series = generate_uid(), generate_uid()
    assert send(store, ct(study, series, issuer="CITY"), CITY)[0] is Outcome.STORED
    before = counts(store)
    other = store if cached else fresh(store)
    assert send(other, ct(study, series, patient="P-2", issuer="CITY"), CITY)[1] \
        is Refusal.FOREIGN
    assert send(other, ct(study, series, issuer="OTHER"), CITY)[1] is Refusal.FOREIGN
    assert counts(store) == before
    # the right patient joins the study and its series
    assert send(other, ct(study, series, issuer="CITY"), CITY_PACS)[0] is Outcome.STORED


@pytest.mark.parametrize("cached", [True, False], ids=["warm-cache", "fresh-process"])
def test_a_series_joins_only_its_own_study(store: ArchiveStore, cached: bool) -> None:
    study, series = generate_uid(), generate_uid()
    assert send(store, ct(study, series), CITY)[0] is Outcome.STORED
    before = counts(store)
    other = store if cached else fresh(store)
    # the series UID under a new study of the same patient and institution: no new study
    # (or patient) row is left behind by the refusal
    assert send(other, ct(generate_uid(), series), CITY)[1] is Refusal.FOREIGN
    assert counts(store) == before


@pytest.mark.parametrize("cached", [True, False], ids=["warm-cache", "fresh-process"])
def test_a_sop_instance_of_another_institution_is_never_acknowledged(store: ArchiveStore,
                                                                     cached: bool) -> None:
    instance = ct(generate_uid(), generate_uid())
    assert send(store, instance, CITY)[0] is Outcome.STORED
    before = counts(store)
    other = store if cached else fresh(store)
    # identical content from another institution: not a "duplicate" success
    assert send(other, instance, REGIONAL)[:2] == (Outcome.REFUSED, Refusal.FOREIGN)
    # other content under that UID, from another institution, under the replace policy too
    other.duplicate_policy = DuplicatePolicy.REPLACE
    changed = ct(generate_uid(), generate_uid(), patient="R-1", sop=str(instance.SOPInstanceUID))
    assert send(other, changed, REGIONAL)[:2] == (Outcome.REFUSED, Refusal.FOREIGN)
    assert counts(store) == before


def _written(store: ArchiveStore, ds: Dataset, source: IngestSource) -> _Written:
    body = dataset_bytes(ds)
    header = check_structure(body, ExplicitVRLittleEndian)
    chunks: list[bytes | memoryview] = [
        build_file_meta(CTImageStorage, str(ds.SOPInstanceUID), ExplicitVRLittleEndian,
                        source.source_ae), body]
    stored = storage.write_atomic(store.storage_dir, chunks, storage.sha256_of(chunks),
                                  header.study_uid, sync_directory=False)
    return _Written(header, stored, ExplicitVRLittleEndian, source, memoryview(body))


def test_one_group_commit_round_keeps_the_rule_between_its_instances(store: ArchiveStore
                                                                      ) -> None:
    """Instances of two institutions in the same round: the first to make the study owns it;
    the second is refused although the study's row is not committed yet."""
    study, series = generate_uid(), generate_uid()
    shared = ct(study, generate_uid())
    batch = [
        _written(store, ct(study, series), CITY),
        _written(store, ct(study, series, patient="R-9"), REGIONAL),
        _written(store, ct(study, generate_uid()), REGIONAL),
        _written(store, shared, CITY),
        _written(store, shared, REGIONAL),  # the same SOP instance, identical, other owner
        _written(store, ct(study, series), CITY_PACS),
    ]
    results = _commit_round(store, batch)
    assert [r.outcome if not isinstance(r, Exception) else r for r in results] == [
        Outcome.STORED, Outcome.REFUSED, Outcome.REFUSED, Outcome.STORED, Outcome.REFUSED,
        Outcome.STORED]
    assert {r.refusal for r in results if not isinstance(r, Exception)} == {
        None, Refusal.FOREIGN}
    with store.engine.connect() as conn:
        rows = conn.execute(select(studies.c.institution_id, studies.c.num_instances)).all()
    assert rows == [("city-hospital", 3)]


def test_identical_dataset_with_other_file_meta_is_a_duplicate(store: ArchiveStore) -> None:
    """A PACS forwarding what the modality sent (its own Source AE Title in the file meta), or
    the same instance over STOW-RS with another file meta, is the same instance."""
    instance = ct(generate_uid(), generate_uid())
    assert send(store, instance, CITY)[0] is Outcome.STORED
    assert send(store, instance, CITY_PACS)[0] is Outcome.DUPLICATE
    part10 = (build_file_meta(CTImageStorage, str(instance.SOPInstanceUID), ExplicitVRLittleEndian,
                              "SOME_WORKSTATION") + dataset_bytes(instance))
    assert ingest_part10(store, part10, IngestSource("city-hospital", channel="stow")).outcome \
        is Outcome.DUPLICATE
    with store.engine.connect() as conn:
        row = conn.execute(select(instances.c.dataset_sha256, instances.c.source_ae)).one()
    assert row.source_ae == "CITY_CT1" and row.dataset_sha256 is not None
    # other content is still a conflict, whatever the meta
    changed = ct(str(instance.StudyInstanceUID), str(instance.SeriesInstanceUID),
                 sop=str(instance.SOPInstanceUID), value=7)
    assert send(store, changed, CITY_PACS)[:2] == (Outcome.REFUSED, Refusal.CONFLICT)
    assert len(counts(store)["files"]) == 1  # type: ignore[arg-type]


def test_rows_from_before_the_dataset_hash_are_compared_from_their_file(store: ArchiveStore
                                                                       ) -> None:
    instance = ct(generate_uid(), generate_uid())
    assert send(store, instance, CITY)[0] is Outcome.STORED
    with store.engine.begin() as conn:  # as migrated: the column empty
        conn.execute(instances.update().values(dataset_sha256=None))
    assert send(fresh(store), instance, CITY_PACS)[0] is Outcome.DUPLICATE
    with store.engine.connect() as conn:
        assert conn.execute(select(instances.c.dataset_sha256)).scalar_one() is not None
