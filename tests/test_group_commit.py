"""Group commit: instances written by several threads at once share a directory fsync and an
index transaction, and each still gets exactly the outcome it would get alone (stored, duplicate
or conflict), only after its round has committed.

Three levels: the leader/follower mechanism itself (deterministic, with a round held open), the
ingest function from many threads on SQLite and PostgreSQL, and four concurrent dcmtk storescu
associations against the archive process.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from consilium.archive import storage
from consilium.archive.group_commit import GroupCommit
from consilium.archive.ingest import (
    ArchiveStore,
    IngestResult,
    IngestSource,
    Outcome,
    Refusal,
    ingest_part10,
)
from consilium.archive.models import instances, series_table, studies
from consilium.archive.recovery import fsck
from consilium.db import make_engine, migrate
from tests.conftest import DCMTK, ConsiliumServer, pydicom_data_dir, storescu_statuses

DATA = pydicom_data_dir()
CITY = IngestSource("city-hospital", "CITY_CT1", "dimse")


# -- the mechanism ------------------------------------------------------------------------


def test_a_lone_item_commits_at_once_and_waiters_share_the_next_round() -> None:
    rounds: list[list[int]] = []
    first_round_entered = threading.Event()
    release_first_round = threading.Event()

    def commit(items: list[int]) -> list[str]:
        rounds.append(list(items))
        if len(rounds) == 1:
            first_round_entered.set()
            assert release_first_round.wait(10)
        return [f"done {i}" for i in items]

    group: GroupCommit[int, str] = GroupCommit(commit)
    outcomes: dict[int, str] = {}

    def submit(item: int) -> None:
        outcomes[item] = group.submit(item)

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    assert first_round_entered.wait(10)  # no batch window: the lone item is being committed
    assert rounds == [[0]]
    followers = [threading.Thread(target=submit, args=(i,)) for i in (1, 2, 3)]
    for thread in followers:
        thread.start()
    while len(group._queue) < 3:  # all three queued behind the open round
        threading.Event().wait(0.001)
    assert not outcomes  # nobody returns before its round has committed
    release_first_round.set()
    for thread in (leader, *followers):
        thread.join(10)
    assert rounds[0] == [0] and sorted(rounds[1]) == [1, 2, 3] and len(rounds) == 2
    assert outcomes == {i: f"done {i}" for i in range(4)}
    assert (group.rounds, group.items) == (2, 4)


def test_a_leader_waiting_at_the_gate_takes_all_that_queued_meanwhile() -> None:
    """The gate stands for another process's commit (the SQLite writer lock): while the leader
    waits there, the items that arrive join its round instead of forming rounds of their own."""
    gate = threading.Lock()
    rounds: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        rounds.append(items)
        return items

    group: GroupCommit[int, int] = GroupCommit(commit, gate=lambda: gate)
    gate.acquire()  # another process is committing
    threads = [threading.Thread(target=group.submit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while len(group._queue) < 4:
        threading.Event().wait(0.001)
    gate.release()
    for thread in threads:
        thread.join(10)
    assert [sorted(r) for r in rounds] == [[0, 1, 2, 3]]


def test_a_failed_round_fails_only_its_own_waiters() -> None:
    def commit(items: list[int]) -> list[int]:
        if 13 in items:
            raise OSError("disk gone")
        return items

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(OSError, match="disk gone"):
        group.submit(13)
    assert group.submit(7) == 7


# -- ingest from many threads -------------------------------------------------------------


def _instance(sop_uid: str, study_uid: str, series_uid: str, description: str = "") -> bytes:
    ds = dcmread(DATA / "test_files" / "CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    if description:
        ds.SeriesDescription = description
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _hold_rounds_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round's directory sync takes a little longer, so that threads pile up behind it
    and rounds really hold several instances."""
    original = storage.sync_directories

    def slow(directories: set[Path] | list[Path] | tuple[Path, ...]) -> None:
        threading.Event().wait(0.02)
        original(directories)

    monkeypatch.setattr(storage, "sync_directories", slow)


def _concurrent_mix(store: ArchiveStore, monkeypatch: pytest.MonkeyPatch) -> None:
    study, series = generate_uid(), generate_uid()
    kept = [_instance(generate_uid(), study, series) for _ in range(6)]
    for data in kept:
        assert ingest_part10(store, data, CITY).outcome is Outcome.STORED
    conflicting = [_instance(str(dcmread(io.BytesIO(d)).SOPInstanceUID), study, series,
                             "other content") for d in kept]
    new = [_instance(generate_uid(), study, series) for _ in range(12)]
    raced = _instance(generate_uid(), study, series)  # the same new instance, twice at once
    raced_other = _instance(str(dcmread(io.BytesIO(raced)).SOPInstanceUID), study, series,
                            "raced other content")
    work: list[tuple[str, bytes]] = (
        [("new", d) for d in new] + [("duplicate", d) for d in kept]
        + [("conflict", d) for d in conflicting] + [("raced", raced), ("raced", raced),
                                                      ("raced-other", raced_other)]
    )
    _hold_rounds_open(monkeypatch)
    start = threading.Barrier(len(work))
    results: list[tuple[str, bytes, IngestResult]] = []
    lock = threading.Lock()

    def run(kind: str, data: bytes) -> None:
        start.wait(10)
        result = ingest_part10(store, data, CITY)
        with lock:
            results.append((kind, data, result))

    threads = [threading.Thread(target=run, args=item) for item in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == len(work)
    assert store.committer.rounds < store.committer.items  # rounds held several instances

    by_kind: dict[str, list[IngestResult]] = {}
    for kind, _, result in results:
        by_kind.setdefault(kind, []).append(result)
    assert {r.outcome for r in by_kind["new"]} == {Outcome.STORED}
    assert {r.outcome for r in by_kind["duplicate"]} == {Outcome.DUPLICATE}
    assert {(r.outcome, r.refusal) for r in by_kind["conflict"]} == {
        (Outcome.REFUSED, Refusal.CONFLICT)}
    # three offers of one new SOP instance, two with the same bytes: the first committed wins;
    # an identical offer is a duplicate of it, a different one a conflict, whatever the order
    raced_results = by_kind["raced"] + by_kind["raced-other"]
    assert sum(r.outcome is Outcome.STORED for r in raced_results) == 1
    with store.engine.connect() as conn:
        rows = {r.sop_uid: r for r in conn.execute(select(instances))}
        study_row = conn.execute(select(studies)).one()
        series_row = conn.execute(select(series_table)).one()
    raced_uid = str(dcmread(io.BytesIO(raced)).SOPInstanceUID)
    winner = rows[raced_uid].sha256
    for kind, data, result in results:
        if kind.startswith("raced"):
            same = storage.sha256_of([data]) == winner
            assert result.outcome in (
                (Outcome.STORED, Outcome.DUPLICATE) if same else (Outcome.REFUSED,))
    # the index: the first version of every instance, counts equal to the rows, no file of a
    # refused offer left behind, no journal entry left
    assert len(rows) == len(kept) + len(new) + 1
    for data in kept:
        assert rows[str(dcmread(io.BytesIO(data)).SOPInstanceUID)].sha256 == \
            storage.sha256_of([data])
    assert study_row.num_instances == series_row.num_instances == len(rows)
    report = fsck(store)
    assert report.consistent and not report.orphan_files, report
    assert list((store.storage_dir / storage.TMP_DIR).iterdir()) == []


def test_concurrent_new_duplicate_and_conflicting_instances_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    _concurrent_mix(ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom"), monkeypatch)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    from tests.postgres import postgres_server

    with postgres_server() as url:  # PostgreSQL is installed by .ci/run: no skip
        yield url


def test_concurrent_new_duplicate_and_conflicting_instances_on_postgresql(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    try:
        _concurrent_mix(ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom"),
                        monkeypatch)
    finally:
        engine.dispose()


# -- four storescu associations at once -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("dcmtk_available")
def test_four_storescu_associations_each_get_their_own_statuses(tmp_path: Path) -> None:
    """Four associations at once into one process (its threads share group commits): two send
    new instances, one resends instances already stored (success), one sends other content
    under stored SOP Instance UIDs (0x0111, the first version stays)."""
    study, series = generate_uid(), generate_uid()
    folders = {name: tmp_path / name for name in ("new1", "new2", "resend", "conflict", "first")}
    for folder in folders.values():
        folder.mkdir()
    first = {}
    for index in range(20):
        uid = generate_uid()
        first[uid] = _instance(uid, study, series)
        (folders["first"] / f"{index}.dcm").write_bytes(first[uid])
        (folders["resend"] / f"{index}.dcm").write_bytes(first[uid])
        (folders["conflict"] / f"{index}.dcm").write_bytes(
            _instance(uid, study, series, "other content"))
    for name in ("new1", "new2"):
        for index in range(40):
            (folders[name] / f"{index}.dcm").write_bytes(
                _instance(generate_uid(), study, series))

    data_dir = tmp_path / "var"
    server = ConsiliumServer(data_dir).start()
    env = dict(os.environ, TCP_NODELAY="1")

    def storescu(folder: Path) -> subprocess.Popen[str]:
        return subprocess.Popen([str(DCMTK / "storescu"), "-d", "-nh", "+sd", *server.address(),
                                 str(folder)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, errors="replace")

    try:
        run = storescu(folders["first"])
        assert set(storescu_statuses(run.communicate(timeout=120)[0]).values()) == {0x0000}
        with sqlite3.connect(data_dir / "consilium.db") as db:
            first_versions = dict(db.execute("SELECT sop_uid, sha256 FROM instance"))
        names = ("new1", "new2", "resend", "conflict")
        procs = {name: storescu(folders[name]) for name in names}
        outputs = {name: proc.communicate(timeout=300)[0] for name, proc in procs.items()}
    finally:
        server.stop()
    expected = {"new1": (0, 40, 0x0000), "new2": (0, 40, 0x0000), "resend": (0, 20, 0x0000),
                "conflict": (1, 20, 0x0111)}
    for name, (exit_code, count, status) in expected.items():
        statuses = storescu_statuses(outputs[name])
        assert len(statuses) == count, outputs[name][-2000:]
        assert set(statuses.values()) == {status}, (name, outputs[name][-2000:])
        if exit_code == 0:  # storescu exits non-zero only when a store failed
            assert procs[name].returncode == 0, outputs[name][-2000:]
    with sqlite3.connect(data_dir / "consilium.db") as db:
        rows = dict(db.execute("SELECT sop_uid, sha256 FROM instance").fetchall())
        counts = db.execute("SELECT num_instances FROM study").fetchall()
    assert len(rows) == 20 + 40 + 40
    assert set(first_versions) == set(first)
    assert {uid: rows[uid] for uid in first} == first_versions  # the first versions stay
    assert counts == [(100,)]
