"""Trust beyond the AE title: a node may be bound to the addresses it calls from (its ``host``
when ``dicom.check_node_host`` is on, as Orthanc's DicomCheckModalityHost, and any
``networks`` it lists). A node calling from elsewhere is told what an unknown AE is told."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import ConsiliumServer, dcmtk

pytestmark = pytest.mark.usefixtures("dcmtk_available")

NODES = [
    {"ae_title": "NEAR", "host": "127.0.0.1", "port": 104},
    {"ae_title": "FAR", "host": "192.0.2.10", "port": 104},  # TEST-NET-1: never us
    {"ae_title": "NOHOST"},
    {"ae_title": "NETFAR", "networks": ["192.0.2.0/24", "2001:db8::/32"]},
    {"ae_title": "NETNEAR", "host": "192.0.2.10", "port": 104, "networks": ["127.0.0.0/8"]},
    {"ae_title": "BYNAME", "host": "localhost", "port": 104},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsiliumServer]:
    institutions = [{"id": "clinic", "name": "Clinic", "nodes": NODES}]
    srv = ConsiliumServer(tmp_path_factory.mktemp("trust") / "var", extra_env={
        "CONSILIUM_INSTITUTIONS": json.dumps(institutions),
        "CONSILIUM_DICOM_CHECK_NODE_HOST": "true",
    }).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("ae_title, admitted", [
    ("NEAR", True), ("FAR", False), ("NOHOST", True), ("NETFAR", False), ("NETNEAR", True),
    ("BYNAME", True), ("STRANGER", False),
])
def test_a_node_is_admitted_only_from_its_addresses(server: ConsiliumServer, ae_title: str,
                                                    admitted: bool) -> None:
    run = dcmtk("echoscu", "-aet", ae_title, *server.address())
    assert (run.returncode == 0) is admitted, run.stderr
    if not admitted:
        assert "Calling AE Title Not Recognized" in run.stderr


def test_a_refused_host_is_logged_with_the_address(server: ConsiliumServer) -> None:
    dcmtk("echoscu", "-aet", "FAR", *server.address())
    assert "calling AE 'FAR' from 127.0.0.1, not from its configured host" in server.log


def test_a_node_network_that_is_not_one_stops_the_start() -> None:
    from pydantic import ValidationError

    from consilium.settings import DicomNode

    with pytest.raises(ValidationError, match="does not appear to be an IPv4 or IPv6 network"):
        DicomNode(ae_title="X", networks=["10.0.0.0/33"])
