"""Trust beyond the AE title: a node may be bound to the addresses it calls from (its ``host``
when ``dicom.check_node_host`` is on, as Orthanc's DicomCheckModalityHost, and any
``networks`` it lists). A node calling from elsewhere is told what an unknown AE is told."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consilium.archive.dicomfile import split_part10
from tests.conftest import ConsiliumServer, dcmtk, pydicom_data_dir

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


# -- DICOM TLS ----------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(folder: Path, name: str, ca: str) -> None:
    """A key and a certificate for ``name`` signed by the CA ``ca`` (both in ``folder``)."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / f"{name}.key"),
             "-out", str(folder / f"{name}.csr"), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / f"{ca}.crt"),
             "-CAkey", str(folder / f"{ca}.key"), "-CAcreateserial", "-days", "2",
             "-out", str(folder / f"{name}.crt"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", str(folder / f"{ca}.key"), "-out", str(folder / f"{ca}.crt"),
                 "-subj", f"/CN={ca}")
    _issue(folder, "archive", "ca")
    _issue(folder, "modality", "ca")
    _issue(folder, "intruder", "other-ca")
    return folder


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Path
               ) -> Iterator[tuple[ConsiliumServer, int]]:
    srv = ConsiliumServer(tmp_path_factory.mktemp("tls") / "var", extra_env={
        "CONSILIUM_DICOM_TLS_PORT": "0",
        "CONSILIUM_DICOM_TLS_CERTIFICATE": str(pki / "archive.crt"),
        "CONSILIUM_DICOM_TLS_KEY": str(pki / "archive.key"),
        "CONSILIUM_DICOM_TLS_CA": str(pki / "ca.crt"),
        "CONSILIUM_DICOM_ARTIM_TIMEOUT": "3",
    }).start()
    announced = re.search(r"^DICOM TLS: AE \S+ on port (\d+)$", srv.log, re.MULTILINE)
    assert announced is not None, srv.log
    yield srv, int(announced.group(1))
    srv.stop()


CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def _c_get_over_tls(port: int, pki: Path) -> list[bytes]:
    """The data sets a C-GET of CT_small's study brings, as received (pynetdicom, over TLS)."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, _config, build_role, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
    )

    received: list[bytes] = []

    def on_store(event: Any) -> int:
        received.append(bytes(event.request.DataSet.getvalue()))
        return 0x0000

    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    client.check_hostname = False
    client.load_cert_chain(str(pki / "modality.crt"), str(pki / "modality.key"))
    ae = AE(ae_title="GETSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = CT_STUDY
    assert _config.STORE_RECV_CHUNKED_DATASET is False
    assoc = ae.associate("127.0.0.1", port, ae_title="CONSILIUM", tls_args=(client, "archive"),
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    statuses = [s.Status for s, _ in assoc.send_c_get(
        identifier, StudyRootQueryRetrieveInformationModelGet) if s]
    assoc.release()
    assert statuses[-1] == 0x0000, statuses
    return received


def _tls(pki: Path, who: str) -> list[str]:
    return ["+tls", str(pki / f"{who}.key"), str(pki / f"{who}.crt"), "+cf", str(pki / "ca.crt")]


def test_dicom_over_tls_with_a_certificate_of_the_configured_ca(
    tls_server: tuple[ConsiliumServer, int], pki: Path, tmp_path: Path
) -> None:
    server, port = tls_server
    address = ["-aec", server.ae_title, "127.0.0.1", str(port)]
    ct = pydicom_data_dir() / "test_files" / "CT_small.dcm"
    run = dcmtk("storescu", *_tls(pki, "modality"), "-aet", "CITY_CT1", *address, str(ct))
    assert run.returncode == 0, run.stderr  # the lean transport, over TLS
    run = dcmtk("findscu", *_tls(pki, "modality"), "-v", "-S", "-aet", "FINDSCU", *address,
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={CT_STUDY}")
    assert run.returncode == 0 and "Find Response: 1 (Pending)" in run.stderr, run.stderr
    # dcmtk's getscu has no TLS: pynetdicom's SCU asks for a C-GET (pynetdicom's transport),
    # which sends the stored instance unchanged
    (stored,) = (server.data_dir / "dicom").rglob("*.dcm")
    data = stored.read_bytes()
    assert _c_get_over_tls(port, pki) == [data[split_part10(data).dataset_offset:]]
    # the plain port is still there, plain
    assert dcmtk("echoscu", "-aet", "CITY_CT1", *server.address()).returncode == 0


@pytest.mark.parametrize("client", ["intruder", "none", "plain"])
def test_tls_port_refuses_other_certificates_and_plain_dicom(
    tls_server: tuple[ConsiliumServer, int], pki: Path, client: str
) -> None:
    server, port = tls_server
    tls = {"intruder": _tls(pki, "intruder"), "none": ["+tla", "+cf", str(pki / "ca.crt")],
           "plain": []}[client]
    run = dcmtk("echoscu", *tls, "-aet", "CITY_CT1", "-aec", server.ae_title, "127.0.0.1",
                str(port), timeout=60)
    assert run.returncode != 0, run.stderr
    assert dcmtk("echoscu", *_tls(pki, "modality"), "-aet", "CITY_CT1", "-aec", server.ae_title,
                 "127.0.0.1", str(port)).returncode == 0
