"""A bounded fuzz run (a few hundred mutants of pydicom's test files, :mod:`tests.fuzzing`) over
both C-STORE receive paths (``dicom.fast_store`` true and false) and STOW-RS of real
``consilium serve`` processes: no 0x0110 and no missing response, no 5xx, the servers still
answer, their processes' peak memory stays bounded, and afterwards every acknowledged instance
is stored byte for byte and readable (metadata), and ``consilium fsck`` is clean.
``bench/fuzz.py`` runs the same with thousands of mutants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import dcmtk, send_raw
from tests.fuzzing import (
    Tally,
    cstore,
    mutants,
    peak_rss_mb,
    process_tree,
    stow,
    stow_batches,
    verify,
)
from tests.test_bad_input import good_file
from tests.test_dicomweb import Api
from tests.webserver import WebServer

pytestmark = pytest.mark.usefixtures("dcmtk_available")

PER_CHANNEL = 100
STOW_BATCH = 20
PEAK_MB = 600  # each process of a server: the web process and every DIMSE worker


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, WebServer]]:
    root = tmp_path_factory.mktemp("fuzz")
    # one archive per channel: the seeds' mutants share SOP Instance UIDs, and each archive
    # keeps the first version it stored
    started = {
        "lean": WebServer(root / "lean", extra_env={"CONSILIUM_DICOM_FAST_STORE": "true"}),
        "pynetdicom": WebServer(root / "pynetdicom",
                                extra_env={"CONSILIUM_DICOM_FAST_STORE": "false"}),
        "stow": WebServer(root / "stow"),
    }
    for server in started.values():
        server.start()
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def test_mutated_inputs_on_every_way_in(servers: dict[str, WebServer], tmp_path: Path) -> None:
    batch = list(mutants(3 * PER_CHANNEL))
    lean, classic, web = servers["lean"], servers["pynetdicom"], servers["stow"]
    tallies = {"lean": Tally(), "pynetdicom": Tally(), "stow": Tally()}
    cstore(lean.dicom_port, tmp_path / "lean", batch[0::3], tallies["lean"])
    cstore(classic.dicom_port, tmp_path / "classic", batch[1::3], tallies["pynetdicom"])
    api = Api(web, "city-hospital")
    for request in stow_batches(batch[2::3], STOW_BATCH):
        stow(api.base, api.headers, request, tallies["stow"])
    for name, tally in tallies.items():
        assert tally.problems == [], (name, tally.problems[:10])
        # the run is worth something: both outcomes happen on every channel
        assert tally.acknowledged and sum(tally.statuses.values()) > len(tally.acknowledged), (
            name, tally.statuses)

    for name, server in servers.items():
        # still serving: C-ECHO, a valid instance, a search over the whole institution
        assert dcmtk("echoscu", "-aet", "FINDSCU", "-aec", "CONSILIUM", "127.0.0.1",
                     str(server.dicom_port)).returncode == 0
        good, _ = good_file(tmp_path, f"good-{name}")
        assert send_raw(server.dicom_port, [good]) == [(0x0000, "")]
        search = Api(server, "city-hospital").get("/instances", PatientName="*", limit="1000")
        assert search.status_code == 200, search.text[:300]
        assert server.proc is not None
        peaks = {pid: peak_rss_mb(pid) for pid in process_tree(server.proc.pid)}
        assert max(peaks.values()) < PEAK_MB, (name, peaks)

    # every acknowledged instance is readable through DICOMweb
    for name, server in (("lean", lean), ("pynetdicom", classic), ("stow", web)):
        reader = Api(server, "city-hospital")
        for sop in tallies[name].acknowledged:
            [found] = reader.get("/instances", SOPInstanceUID=sop).json()
            url = found["00081190"]["Value"][0][len(reader.base):]
            assert reader.get(url + "/metadata").status_code == 200, (name, sop)

    for server in servers.values():
        server.stop()
    assert verify(lean.data_dir, [tallies["lean"]]) == []
    assert verify(classic.data_dir, [tallies["pynetdicom"]]) == []
    assert verify(web.data_dir, [tallies["stow"]]) == []
