"""Every valid file pydicom ships goes in with dcmtk's storescu and comes back byte-identical
through dcmtk's getscu (C-GET) and movescu (C-MOVE).

What "identical" compares: the dataset bytes after the file meta group.

* ``sent``: what storescu put on the wire. dcmtk decodes and re-encodes every dataset it sends,
  so for some files (about one in seven of the corpus) this differs from the file on disk. A
  dcmtk ``storescp +B`` (bit-preserving) is sent the same files with the same options and
  records exactly what storescu sends: that is the reference. The two RLE RT Dose files dcmtk
  cannot parse go with pynetdicom instead, raw, so for them ``sent`` is the file's dataset.
* ``stored``: the dataset of the archive's file on disk (its index row names it).
* ``get``/``move``: what getscu/movescu (both ``+B``, bit-preserving) wrote.

The archive keeps a dataset as received, so ``stored == sent`` for every file, and retrieval
sends the stored bytes, so ``get == move == stored``. Where storescu did not change the file,
that is also the original file's dataset.

Several files of the corpus share a SOP Instance UID with other content (the same image in other
transfer syntaxes); the archive refuses such a resend (0x0111), so the corpus is sent in rounds
of unique SOP Instance UIDs, each to a fresh archive. Each round's archive is also sent the next
round's files (same UIDs): those that differ from the stored instance on the wire (another
transfer syntax or other bytes) are refused and the first version stays; the few that are
identical on the wire are idempotent successes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import read_dataset

from consilium.archive.dicomfile import UnreadableDicom, check_structure, split_part10
from consilium.archive.pixel_guard import PixelLimits, ingest_problems
from tests.conftest import (
    STORESCU_PROPOSAL,
    ConsiliumServer,
    dcmtk,
    dcmtk_in,
    institutions_env,
    pydicom_data_dir,
    reserved_port,
    send_raw,
    storescu_statuses,
    wait_for_port,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("dcmtk_available")]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
SUCCESS, DUPLICATE_SOP_INSTANCE = 0x0000, 0x0111
CANNOT_UNDERSTAND = {0xC210, 0xC211, 0xC214}  # 0xC214: declared pixels over the limits


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    name: str  # relative to pydicom's data folder
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    dataset: bytes  # the bytes after the file meta group


@dataclass(frozen=True)
class Corpus:
    valid: list[CorpusFile]
    invalid: dict[Path, str]  # PS3.10 files that fail the checks -> why
    rounds: list[list[CorpusFile]]  # unique SOP Instance UIDs within a round


def _uid(value: str) -> str:
    return value.strip().rstrip("\x00").strip()


@cache
def corpus() -> Corpus:
    """pydicom's test_files and charset_files, recursively. A file is *valid* when it is a
    PS3.10 file whose dataset is structurally complete, whose pixel data ingest takes, and
    that names its SOP Class, SOP Instance, Study and Series; files that are not PS3.10 at all
    (no preamble/meta) are left out."""
    base = pydicom_data_dir()
    valid: list[CorpusFile] = []
    invalid: dict[Path, str] = {}
    paths = sorted(p for d in ("test_files", "charset_files") for p in (base / d).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    for path in paths:
        data = path.read_bytes()
        try:
            part10 = split_part10(data)
        except UnreadableDicom:
            continue
        view = memoryview(data)[part10.dataset_offset:]
        try:
            header = check_structure(view, part10.transfer_syntax)
        except UnreadableDicom as exc:
            invalid[path] = str(exc)
            continue
        # JPEG2000-embedded-sequence-delimiter.dcm: its codestream declares 3.7e9 x 1024 pixels
        refused = ingest_problems(header, view, part10.transfer_syntax, PixelLimits())
        if refused is not None:
            invalid[path] = refused[1]
            continue
        missing = [name for name, value in (
            ("SOPClassUID", header.sop_class_uid), ("SOPInstanceUID", header.sop_instance_uid),
            ("StudyInstanceUID", header.study_uid), ("SeriesInstanceUID", header.series_uid),
        ) if not _uid(value)]
        if missing:
            invalid[path] = "missing " + ", ".join(missing)
            continue
        valid.append(CorpusFile(path, path.relative_to(base).as_posix(), part10.transfer_syntax,
                                _uid(header.sop_class_uid), _uid(header.sop_instance_uid),
                                data[part10.dataset_offset:]))
    by_uid: dict[str, list[CorpusFile]] = defaultdict(list)
    for f in valid:
        by_uid[f.sop_instance_uid].append(f)
    rounds: list[list[CorpusFile]] = [[] for _ in range(max(len(v) for v in by_uid.values()))]
    for files in by_uid.values():
        for index, f in enumerate(files):
            rounds[index].append(f)
    return Corpus(valid, invalid, rounds)


def dataset_of(path: Path) -> tuple[str, bytes]:
    """(SOP Instance UID of the meta, dataset bytes) of a PS3.10 file."""
    data = path.read_bytes()
    part10 = split_part10(data)
    return _uid(str(part10.meta.MediaStorageSOPInstanceUID)), data[part10.dataset_offset:]


def datasets_in(folder: Path) -> dict[str, bytes]:
    return dict(dataset_of(p) for p in sorted(folder.iterdir()) if p.is_file())


def by_syntax(files: list[CorpusFile]) -> dict[str, list[CorpusFile]]:
    groups: dict[str, list[CorpusFile]] = defaultdict(list)
    for f in files:
        groups[f.transfer_syntax].append(f)
    return dict(groups)


@dataclass(frozen=True)
class IndexRow:
    transfer_syntax: str
    path: str
    sha256: str


def index_rows(data_dir: Path) -> dict[str, IndexRow]:
    with sqlite3.connect(data_dir / "consilium.db") as db:
        rows = db.execute("SELECT sop_uid, transfer_syntax_uid, path, sha256 FROM instance")
        return {r[0]: IndexRow(r[1], r[2], r[3]) for r in rows}


@dataclass
class Sent:
    """What one sending pass answered and put on the wire."""

    statuses: dict[str, int | None] = field(default_factory=dict)  # path -> store status
    wire: dict[str, bytes] = field(default_factory=dict)  # SOP UID -> dataset as sent
    raw: set[str] = field(default_factory=set)  # paths dcmtk could not read: sent by pynetdicom


@dataclass
class RoundResult:
    sent: Sent = field(default_factory=Sent)
    stored: dict[str, bytes] = field(default_factory=dict)  # SOP UID -> dataset on disk
    rows: dict[str, IndexRow] = field(default_factory=dict)
    got: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ts -> SOP UID -> bytes
    got_syntax: dict[str, str] = field(default_factory=dict)  # SOP UID -> TS of getscu's file
    moved: dict[str, bytes] = field(default_factory=dict)
    resent: Sent = field(default_factory=Sent)  # the next round's files, sent to this archive
    invalid_statuses: dict[str, int | None] = field(default_factory=dict)
    invalid_output: str = ""
    rows_after_invalid: int = -1
    move_output: str = ""  # movescu's own account and the archive's log of the C-MOVE


@dataclass
class Witness:
    """dcmtk's storescp in bit-preserving mode: records what storescu sends."""

    folder: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _reservation: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Witness:
        self.folder.mkdir(parents=True)
        self.port = self._reservation.enter_context(reserved_port())
        self.proc = subprocess.Popen(
            ["/usr/bin/storescp", "+B", "+xa", "-od", str(self.folder), str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, TCP_NODELAY="1"),
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self._reservation.close()


def storescu(address: list[str], ts: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    """Send ``files`` (all of transfer syntax ``ts``) in that syntax, without halting on a
    failed store; -d prints each response's status."""
    return dcmtk("storescu", "-d", "-R", STORESCU_PROPOSAL[ts], "-nh", *address,
                 *[str(p) for p in files])


def send(server: ConsiliumServer, files: list[CorpusFile], witness: Path | None) -> Sent:
    """storescu per transfer syntax (and the same to a bit-preserving storescp when
    ``witness`` is a folder); files storescu refuses to read go with pynetdicom, raw."""
    sent = Sent()
    for ts, group in by_syntax(files).items():
        paths = [f.path for f in group]
        run = storescu(server.address(), ts, paths)
        sent.statuses.update(storescu_statuses(run.stderr + run.stdout))
        unread = [f for f in group if f"{f.path}, ignoring file" in run.stderr]
        if witness is not None:
            with Witness(witness / ts) as w:
                storescu(["-aec", "WITNESS", "127.0.0.1", str(w.port)], ts, paths)
            sent.wire.update(datasets_in(witness / ts))
        if unread:
            answers = send_raw(server.dicom_port, [f.path for f in unread])
            for f, (status, _comment) in zip(unread, answers, strict=True):
                sent.statuses[str(f.path)] = status
                sent.raw.add(str(f.path))
                sent.wire[f.sop_instance_uid] = f.dataset
    return sent


def image_keys(uids: list[str]) -> list[str]:
    return ["-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID=" + "\\".join(uids)]


def run_round(index: int, files: list[CorpusFile], next_round: list[CorpusFile], root: Path,
              send_invalid: bool) -> RoundResult:
    with reserved_port() as move_port:  # movescu's receiver, configured in the archive first
        return _run_round(index, files, next_round, root, send_invalid, move_port)


def _run_round(index: int, files: list[CorpusFile], next_round: list[CorpusFile], root: Path,
               send_invalid: bool, move_port: int) -> RoundResult:
    result = RoundResult()
    work = root / f"round{index}"
    work.mkdir()
    server = ConsiliumServer(work / "var", extra_env=institutions_env({"MOVESCU": move_port}))
    server.start()
    try:
        result.sent = send(server, files, work / "witness")
        # the next round's files carry UIDs stored here, with other content
        result.resent = send(server, next_round, None)
        if send_invalid:
            for path in corpus().invalid:
                ts = split_part10(path.read_bytes()).transfer_syntax
                run = dcmtk("storescu", "-d", "-R", STORESCU_PROPOSAL.get(ts, "-xe"), "-nh",
                            *server.address(), str(path))
                result.invalid_output += run.stderr + run.stdout
                result.invalid_statuses.update(storescu_statuses(run.stderr + run.stdout))
            result.rows_after_invalid = len(index_rows(server.data_dir))
        result.rows = index_rows(server.data_dir)
        for uid, row in result.rows.items():
            result.stored[uid] = dataset_of(server.data_dir / "dicom" / row.path)[1]
        for ts, group in by_syntax(files).items():
            folder = work / f"get-{ts}"
            folder.mkdir()
            # getscu's storage side prefers the file's syntax (besides the uncompressed ones)
            dcmtk("getscu", "-S", "+B", "+" + STORESCU_PROPOSAL[ts][1:], "-od", str(folder),
                  *server.address(), *image_keys([f.sop_instance_uid for f in group]))
            result.got[ts] = datasets_in(folder)
            for p in folder.iterdir():
                part10 = split_part10(p.read_bytes())
                result.got_syntax[_uid(str(part10.meta.MediaStorageSOPInstanceUID))] = \
                    part10.transfer_syntax
        folder = work / "move"
        folder.mkdir()
        run = dcmtk_in(folder, "movescu", "-S", "+B", "+xa", "--port", str(move_port),
                       "-od", str(folder), *server.address(),
                       *image_keys([f.sop_instance_uid for f in files]))
        result.moved = datasets_in(folder)
        if len(result.moved) != len(files):  # kept to say why when the test fails
            log = "".join(p.read_text(errors="replace") for p in work.glob("var*.log"))
            result.move_output = (run.stdout + run.stderr)[-4000:] + "\n--- archive log:\n" + \
                "\n".join(line for line in log.splitlines()
                          if "MOVE" in line or "sub-operation" in line or "ERROR" in line)[-6000:]
    finally:
        server.stop()
    return result


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RoundResult]]:
    root = tmp_path_factory.mktemp("roundtrip")
    c = corpus()
    results = []
    for index, files in enumerate(c.rounds):
        next_round = c.rounds[index + 1] if index + 1 < len(c.rounds) else []
        results.append(run_round(index, files, next_round, root, send_invalid=index == 0))
    yield results


def test_corpus_is_split_into_rounds_of_unique_instances() -> None:
    c = corpus()
    assert len(c.valid) >= 150
    assert sum(len(r) for r in c.rounds) == len(c.valid)
    for files in c.rounds:
        assert len({f.sop_instance_uid for f in files}) == len(files)
    # later rounds only repeat UIDs of earlier ones
    for earlier, later in zip(c.rounds, c.rounds[1:], strict=False):
        assert {f.sop_instance_uid for f in later} <= {f.sop_instance_uid for f in earlier}
    assert len(c.rounds) >= 2
    assert set(STORESCU_PROPOSAL) >= {f.transfer_syntax for f in c.valid}
    assert len({f.transfer_syntax for f in c.valid}) >= 10


def test_every_valid_file_is_stored_once_in_its_own_transfer_syntax(
    rounds: list[RoundResult],
) -> None:
    raw = set()
    for files, result in zip(corpus().rounds, rounds, strict=True):
        assert {str(f.path): result.sent.statuses.get(str(f.path)) for f in files} == {
            str(f.path): SUCCESS for f in files
        }
        assert set(result.rows) == {f.sop_instance_uid for f in files}
        for f in files:
            assert result.rows[f.sop_instance_uid].transfer_syntax == f.transfer_syntax, f.name
        raw |= result.sent.raw
    # storescu sends all but the few files dcmtk cannot parse (pydicom's RLE RT Dose files)
    assert len(raw) <= 3, raw


def test_archive_keeps_exactly_what_was_sent(rounds: list[RoundResult]) -> None:
    unchanged = 0
    for files, result in zip(corpus().rounds, rounds, strict=True):
        assert set(result.sent.wire) == {f.sop_instance_uid for f in files}
        for f in files:
            stored = result.stored[f.sop_instance_uid]
            assert stored == result.sent.wire[f.sop_instance_uid], f.name
            unchanged += stored == f.dataset
    # dcmtk re-encodes while sending; most files survive that unchanged
    assert unchanged >= len(corpus().valid) * 2 // 3


def test_movescu_retrieves_every_instance_byte_identical(rounds: list[RoundResult]) -> None:
    for files, result in zip(corpus().rounds, rounds, strict=True):
        assert set(result.moved) == {f.sop_instance_uid for f in files}, result.move_output
        for f in files:
            assert result.moved[f.sop_instance_uid] == result.stored[f.sop_instance_uid], f.name


def _get_params() -> list[object]:
    """Every stored syntax but implicit VR (dcmtk's getscu cannot ask for it): getscu proposes
    the syntax first, and the archive follows the requestor's preference."""
    return [pytest.param(ts, id=pydicom.uid.UID(ts).name.replace(" ", "_"))
            for ts in sorted({f.transfer_syntax for f in corpus().valid} - {IMPLICIT_LE})]


@pytest.mark.parametrize("ts", _get_params())
def test_getscu_retrieves_every_instance_byte_identical(
    rounds: list[RoundResult], ts: str
) -> None:
    for files, result in zip(corpus().rounds, rounds, strict=True):
        wanted = [f for f in files if f.transfer_syntax == ts]
        got = result.got.get(ts, {})
        assert set(got) == {f.sop_instance_uid for f in wanted}
        for f in wanted:
            assert got[f.sop_instance_uid] == result.stored[f.sop_instance_uid], f.name


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_getscu_gets_implicit_vr_instances_converted_without_loss(
    rounds: list[RoundResult],
) -> None:
    """dcmtk 3.6.7's getscu cannot ask for implicit VR: ``+xi`` proposes explicit VR LE only,
    the default proposes explicit first (and the archive takes explicit). The archive then
    converts (``dimse.pynetdicom_server.send_stored``): every element must survive."""
    checked = 0
    for files, result in zip(corpus().rounds, rounds, strict=True):
        for f in (f for f in files if f.transfer_syntax == IMPLICIT_LE):
            got = result.got[IMPLICIT_LE][f.sop_instance_uid]
            assert result.got_syntax[f.sop_instance_uid] == EXPLICIT_LE
            retrieved = read_dataset(BytesIO(got), is_implicit_VR=False, is_little_endian=True)
            stored = read_dataset(BytesIO(result.stored[f.sop_instance_uid]),
                                  is_implicit_VR=True, is_little_endian=True)
            assert [e.tag for e in retrieved] == [e.tag for e in stored], f.name
            assert retrieved == stored, f.name
            checked += 1
    assert checked == sum(f.transfer_syntax == IMPLICIT_LE for f in corpus().valid) > 0


def test_other_content_under_a_stored_uid_is_refused_and_the_first_version_stays(
    rounds: list[RoundResult],
) -> None:
    c = corpus()
    refused = duplicates = 0
    for index, result in enumerate(rounds[:-1]):
        later = rounds[index + 1]
        for f in c.rounds[index + 1]:
            uid = f.sop_instance_uid
            status = result.resent.statuses.get(str(f.path))
            # the archive compares what it would store: same syntax and same bytes on the wire
            # is an idempotent success, anything else is other content
            same = (result.rows[uid].transfer_syntax == f.transfer_syntax
                    and result.stored[uid] == later.sent.wire[uid])
            assert status == (SUCCESS if same else DUPLICATE_SOP_INSTANCE), f.name
            refused += not same
            duplicates += same
            # the index and the retrieved instance are still the first version
            assert result.stored[uid] == result.sent.wire[uid]
            assert uid in result.moved, result.move_output
            assert result.moved[uid] == result.sent.wire[uid]
        assert len(result.rows) == len(c.rounds[index])
    assert refused + duplicates == len(c.valid) - len(c.rounds[0])
    assert refused >= 20


def test_invalid_files_are_refused_and_nothing_is_stored(rounds: list[RoundResult]) -> None:
    c = corpus()
    result = rounds[0]
    refused_by_archive = 0
    for path, why in c.invalid.items():
        if str(path) not in result.invalid_statuses:
            # storescu could not parse the file or found no SOP class/instance in it
            assert f"{path}, ignoring file" in result.invalid_output, (path, why)
            continue
        status = result.invalid_statuses[str(path)]
        assert status in CANNOT_UNDERSTAND, (path, why, status)
        if why.startswith("missing"):
            assert status == 0xC211, (path, why)
        refused_by_archive += 1
    assert refused_by_archive >= 4  # the JPEG-LS files without Study/Series UIDs at least
    assert result.rows_after_invalid == len(c.rounds[0])


def test_identical_resend_is_success_and_other_content_is_refused(
    server: ConsiliumServer, tmp_path: Path
) -> None:
    original = pydicom_data_dir() / "test_files" / "CT_small.dcm"
    run = storescu(server.address(), EXPLICIT_LE, [original, original])
    assert run.stderr.count("D: DIMSE Status                  : 0x0000: Success") == 2
    rows = index_rows(server.data_dir)
    assert len(rows) == 1
    (uid, first), = rows.items()
    files = list((server.data_dir / "dicom").rglob("*.dcm"))
    assert [p.relative_to(server.data_dir / "dicom").as_posix() for p in files] == [first.path]

    changed = pydicom.dcmread(original)
    changed.PatientName = "Other^Content"
    changed_path = tmp_path / "changed.dcm"
    changed.save_as(changed_path)
    run = storescu(server.address(), EXPLICIT_LE, [changed_path])
    assert storescu_statuses(run.stderr) == {str(changed_path): DUPLICATE_SOP_INSTANCE}
    assert index_rows(server.data_dir) == {uid: first}
    assert list((server.data_dir / "dicom").rglob("*.dcm")) == files
    assert f"refused (0x0111 conflict) {uid}" in server.log
    folder = tmp_path / "get"
    folder.mkdir()
    dcmtk("getscu", "-S", "+B", "+xe", "-od", str(folder), *server.address(), *image_keys([uid]))
    assert datasets_in(folder) == {uid: dataset_of(server.data_dir / "dicom" / first.path)[1]}
    retrieved = pydicom.dcmread(next(folder.iterdir()))
    assert retrieved.PatientName == pydicom.dcmread(original).PatientName
