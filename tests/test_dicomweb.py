"""DICOMweb end to end: a real ``consilium serve`` process, dicomweb-client (and plain requests
where the bytes themselves are checked) with bearer tokens of the demo identity provider.

Covers QIDO-RS at every level (fuzzy and Cyrillic names, dates, ModalitiesInStudy, paging,
includefield), WADO-RS (instances byte for byte, metadata, frames with transfer syntax
negotiation, bulk data, rendered images, thumbnails), STOW-RS (success, per-instance failures),
the policy (another institution sees nothing) and bad requests. Every JSON answer is checked
against the DICOM JSON model (PS3.18 F.2) by :func:`check_dicom_json`.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from joserfc import jwt
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from consilium.archive.dicomfile import split_part10
from consilium.synthetic import PatientSpec, StudySpec, generate_ct_series
from tests.conftest import pydicom_data_dir
from tests.webserver import WebServer

DATA = pydicom_data_dir()
FILES = DATA / "test_files"

# -- the DICOM JSON model (PS3.18 F.2) ---------------------------------------------------------

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_INT_VRS = {"IS", "SL", "SS", "UL", "US"}
_FLOAT_VRS = {"DS", "FL", "FD"}
_BIG_VRS = {"SV", "UV"}
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
ALL_VRS = _TEXT_VRS | _INT_VRS | _FLOAT_VRS | _BIG_VRS | _BINARY_VRS | {"AT", "PN", "SQ"}
_TAG = re.compile(r"^[0-9A-F]{8}$")


def check_dicom_json(obj: Any, where: str = "$") -> None:
    """Raise AssertionError where ``obj`` breaks the DICOM JSON model."""
    assert isinstance(obj, dict), f"{where}: a dataset is a JSON object"
    keys = list(obj)
    assert keys == sorted(keys), f"{where}: attributes in tag order"
    for key, attr in obj.items():
        at = f"{where}.{key}"
        assert _TAG.match(key), f"{at}: key must be 8 upper-case hex digits"
        assert isinstance(attr, dict) and attr.get("vr") in ALL_VRS, f"{at}: needs a valid vr"
        vr = attr["vr"]
        assert set(attr) <= {"vr", "Value", "BulkDataURI", "InlineBinary"}, f"{at}: {set(attr)}"
        assert len(set(attr) - {"vr"}) <= 1, f"{at}: at most one of Value/BulkDataURI/Inline"
        if "InlineBinary" in attr:
            assert vr in _BINARY_VRS, f"{at}: InlineBinary only for binary VRs"
            base64.b64decode(attr["InlineBinary"], validate=True)
        if "BulkDataURI" in attr:
            assert vr in _BINARY_VRS | _FLOAT_VRS | _INT_VRS, f"{at}: BulkDataURI for {vr}"
            assert attr["BulkDataURI"].startswith("http"), f"{at}: absolute URI"
        if "Value" not in attr:
            continue
        values = attr["Value"]
        assert isinstance(values, list) and values, f"{at}: Value is a non-empty array"
        assert vr not in _BINARY_VRS, f"{at}: binary VRs carry no Value"
        for n, value in enumerate(values):
            vat = f"{at}[{n}]"
            if vr == "SQ":
                check_dicom_json(value, vat)
            elif value is None:
                continue
            elif vr == "PN":
                assert isinstance(value, dict) and value, f"{vat}: PN is an object"
                assert set(value) <= {"Alphabetic", "Ideographic", "Phonetic"}, vat
                assert all(isinstance(v, str) for v in value.values()), vat
            elif vr in _INT_VRS:
                assert isinstance(value, int) and not isinstance(value, bool), f"{vat}: int"
            elif vr in _FLOAT_VRS:
                assert isinstance(value, int | float) and not isinstance(value, bool), vat
            elif vr in _BIG_VRS:
                assert isinstance(value, int | str), vat
            elif vr == "AT":
                assert isinstance(value, str) and _TAG.match(value), f"{vat}: AT"
            else:
                assert isinstance(value, str), f"{vat}: {vr} is a string"


def values(result: dict[str, Any], tag: str) -> list[Any]:
    return list(result.get(tag, {}).get("Value", []))


# -- servers, tokens, data ---------------------------------------------------------------------


def token_for(web: WebServer, institution: str, subject: str = "dicomweb-test") -> str:
    key = web.signing_key()
    now = int(time.time())
    claims = {"iss": f"{web.url}/dev-idp", "aud": "consilium", "sub": subject, "iat": now,
              "exp": now + 3600, "institution": institution, "roles": ["consultant"],
              "name": "DICOMweb test"}
    return str(jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"]))


class Api:
    """dicomweb-client plus plain requests, both with the same bearer token."""

    def __init__(self, web: WebServer, institution: str) -> None:
        self.base = f"{web.url}/dicom-web"
        self.headers = {"Authorization": f"Bearer {token_for(web, institution)}"}
        self.client = DICOMwebClient(self.base, headers=dict(self.headers))

    def get(self, path: str, accept: str | None = None, **params: Any) -> requests.Response:
        headers = dict(self.headers)
        if accept:
            headers["Accept"] = accept
        return requests.get(self.base + path, headers=headers, params=params, timeout=60)

    def parts(self, path: str, accept: str) -> list[bytes]:
        response = self.get(path, accept)
        assert response.status_code == 200, response.text
        return list(self.client._decode_multipart_message(response, stream=False))

    def stow(self, files: list[bytes], study: str | None = None,
             content_type: str = "application/dicom") -> requests.Response:
        boundary = uuid.uuid4().hex
        body = b"".join(
            b"--" + boundary.encode() + f"\r\nContent-Type: {content_type}\r\n\r\n".encode()
            + data + b"\r\n" for data in files
        ) + b"--" + boundary.encode() + b"--\r\n"
        url = self.base + "/studies" + (f"/{study}" if study else "")
        headers = dict(self.headers, Accept="application/dicom+json")
        headers["Content-Type"] = f'multipart/related; type="{content_type}"; boundary={boundary}'
        return requests.post(url, data=body, headers=headers, timeout=120)


def encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct_series(patient: PatientSpec, slices: int, uid_seed: str, date: str = "20261103"
              ) -> list[bytes]:
    study = StudySpec(patient, study_date=date, accession=f"ACC-{uid_seed[-4:]}",
                      referring_physician="Петрова^Анна")
    return [encoded(ds) for ds in generate_ct_series(study, slices=slices, rows=96, columns=96,
                                                     uid_seed=uid_seed)]


def dataset_bytes(part10: bytes) -> bytes:
    return part10[split_part10(part10).dataset_offset:]


def read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(io.BytesIO(data))


def _fixed_dose() -> bytes:
    """rtdose.dcm (15 native frames, implicit VR) with file meta that names its instance."""
    ds = read((FILES / "rtdose.dcm").read_bytes())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return encoded(ds)


def _renamed(path: Path) -> bytes:
    """A corpus file under new UIDs (the corpus reuses them across files), same encoding."""
    ds = read(path.read_bytes())
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return encoded(ds)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    server = WebServer(tmp_path_factory.mktemp("dicomweb") / "var").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def city(web: WebServer) -> Api:
    return Api(web, "city-hospital")


@pytest.fixture(scope="module")
def stored(city: Api) -> dict[str, list[bytes]]:
    """The module's data, stored once through STOW-RS."""
    data = {
        "ivanov": ct_series(PatientSpec("DW-001", "Иванов^Иван^Петрович", "19580312", "M"),
                            12, "dw-ivanov"),
        "smirnova": ct_series(PatientSpec("DW-002", "Smirnova^Olga", "19720521", "F"),
                              3, "dw-smirnova", date="20250115"),
        "files": [(FILES / name).read_bytes() for name in (
            "JPEG2000.dcm", "MR_small_implicit.dcm", "SC_rgb_rle.dcm")] + [
            _fixed_dose(), _renamed(FILES / "MR_small_bigendian.dcm")],
    }
    for batch in data.values():
        answer = city.stow(batch)
        assert answer.status_code == 200, answer.text
        check_dicom_json(answer.json())
    return data


# -- QIDO-RS -----------------------------------------------------------------------------------


def test_search_studies_by_id_name_date_modality(city: Api, stored: dict[str, list[bytes]]
                                                 ) -> None:
    c = city.client
    found = c.search_for_studies(search_filters={"PatientID": "DW-001"})
    assert len(found) == 1
    check_dicom_json(found[0])
    study = found[0]
    assert values(study, "00100010") == [{"Alphabetic": "Иванов^Иван^Петрович"}]
    assert values(study, "00201208") == [12] and values(study, "00201206") == [1]
    assert values(study, "00080061") == ["CT"]
    assert values(study, "00080056") == ["ONLINE"]
    assert "00100030" in study and values(study, "00100030") == ["19580312"]
    uid = values(study, "0020000D")[0]
    assert values(study, "00081190") == [f"{city.base}/studies/{uid}"]
    # case-insensitive wildcard, in Cyrillic; by tag
    assert len(c.search_for_studies(search_filters={"PatientName": "иванов*"})) == 1
    assert len(c.search_for_studies(search_filters={"00100010": "ИВАНОВ^ИВАН^ПЕТРОВИЧ"})) == 1
    # fuzzy: any component's prefix, any case
    fuzzy = c.search_for_studies(search_filters={"PatientName": "петр"}, fuzzymatching=True)
    assert [values(s, "00100020") for s in fuzzy] == [["DW-001"]]
    assert c.search_for_studies(search_filters={"PatientName": "петр"}) == []
    assert len(c.search_for_studies(search_filters={"PatientName": "olg smir"},
                                    fuzzymatching=True)) == 1
    # date ranges
    in_2025 = c.search_for_studies(search_filters={"StudyDate": "20250101-20251231"})
    assert [values(s, "00100020") for s in in_2025] == [["DW-002"]]
    assert len(c.search_for_studies(search_filters={"StudyDate": "20261103-"})) >= 1
    # ModalitiesInStudy
    mr = c.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert mr and all("MR" in values(s, "00080061") for s in mr)
    for result in mr:
        check_dicom_json(result)


def test_paging_warning_and_includefield(city: Api, stored: dict[str, list[bytes]]) -> None:
    everything = city.get("/studies").json()
    assert len(everything) >= 5
    page = city.get("/studies", limit=2, offset=1)
    assert page.status_code == 200
    assert [values(s, "0020000D") for s in page.json()] == \
        [values(s, "0020000D") for s in everything[1:3]]
    assert "additional results" in page.headers["Warning"]
    last = city.get("/studies", limit=2, offset=len(everything) - 1)
    assert len(last.json()) == 1 and "Warning" not in last.headers
    assert city.get("/studies", offset=len(everything) + 5).json() == []
    # includefield by keyword, by tag, 'all'; an attribute the index does not hold
    one = city.get("/studies", PatientID="DW-001",
                   includefield="IssuerOfPatientID,00081030").json()[0]
    assert "00100021" in one and values(one, "00081030") == ["CT CHEST"]
    every = city.get("/studies", PatientID="DW-001", includefield="all").json()[0]
    assert "00100021" in every and "00080090" in every
    inst = city.get("/instances", PatientID="DW-001", includefield="ImagePositionPatient",
                    limit=1).json()[0]
    check_dicom_json(inst)
    assert len(values(inst, "00200032")) == 3
    assert values(inst, "00280100") == [16]  # BitsAllocated, from the stored metadata


def test_search_series_and_instances(city: Api, stored: dict[str, list[bytes]]) -> None:
    c = city.client
    ivanov = read(stored["ivanov"][0])
    series = c.search_for_series(ivanov.StudyInstanceUID)
    assert len(series) == 1
    check_dicom_json(series[0])
    assert values(series[0], "0020000E") == [ivanov.SeriesInstanceUID]
    assert values(series[0], "00201209") == [12]
    assert values(series[0], "00080060") == ["CT"]
    # all series, matched on study attributes, returning them too
    everywhere = c.search_for_series(search_filters={"PatientID": "DW-001"})
    assert len(everywhere) == 1 and values(everywhere[0], "00100020") == ["DW-001"]
    assert len(c.search_for_series(search_filters={"Modality": "MR"})) >= 2
    instances = c.search_for_instances(ivanov.StudyInstanceUID, ivanov.SeriesInstanceUID)
    assert sorted(values(i, "00200013")[0] for i in instances) == list(range(1, 13))
    for instance in instances:
        check_dicom_json(instance)
        assert values(instance, "00280010") == [96]
    study_level = c.search_for_instances(ivanov.StudyInstanceUID,
                                         search_filters={"InstanceNumber": "3"})
    assert len(study_level) == 1 and values(study_level[0], "0020000E") == \
        [ivanov.SeriesInstanceUID]
    assert len(c.search_for_instances(search_filters={"SOPInstanceUID":
                                                      ivanov.SOPInstanceUID})) == 1
    two = read(stored["ivanov"][1]).SOPInstanceUID
    listed = city.get("/instances", SOPInstanceUID=f"{ivanov.SOPInstanceUID},{two}").json()
    assert sorted(values(i, "00080018")[0] for i in listed) == sorted([ivanov.SOPInstanceUID, two])


# -- WADO-RS -----------------------------------------------------------------------------------


def test_ct_series_round_trips_byte_identical(city: Api, stored: dict[str, list[bytes]]) -> None:
    first = read(stored["ivanov"][0])
    path = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    parts = city.parts(path, 'multipart/related; type="application/dicom"; transfer-syntax=*')
    assert sorted(map(dataset_bytes, parts)) == sorted(map(dataset_bytes, stored["ivanov"]))
    whole_study = city.parts(f"/studies/{first.StudyInstanceUID}",
                             'multipart/related; type="application/dicom"')
    assert len(whole_study) == 12
    # dicomweb-client's own decoding of the instance
    ds = city.client.retrieve_instance(first.StudyInstanceUID, first.SeriesInstanceUID,
                                       first.SOPInstanceUID)
    assert ds.PatientName == "Иванов^Иван^Петрович"
    assert ds.pixel_array.tolist() == first.pixel_array.tolist()
    series = city.client.retrieve_series(first.StudyInstanceUID, first.SeriesInstanceUID,
                                         media_types=(("application/dicom", "*"),))
    assert len(series) == 12


def test_metadata_is_the_json_model_with_bulk_data(city: Api, stored: dict[str, list[bytes]]
                                                   ) -> None:
    first = read(stored["ivanov"][0])
    metadata = city.client.retrieve_series_metadata(first.StudyInstanceUID,
                                                    first.SeriesInstanceUID)
    assert len(metadata) == 12
    for item in metadata:
        check_dicom_json(item)
        assert "7FE00010" in item and "BulkDataURI" in item["7FE00010"]
    item = next(m for m in metadata if values(m, "00080018") == [first.SOPInstanceUID])
    assert values(item, "00280030") == [0.7, 0.7]
    assert values(item, "00080090") == [{"Alphabetic": "Петрова^Анна"}]
    assert item["00081030"] == {"vr": "LO", "Value": ["CT CHEST"]}
    # round trip through pydicom's reader of the model
    ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
    assert ds.PatientName == first.PatientName and ds.ImagePositionPatient == \
        first.ImagePositionPatient
    pixels = city.client.retrieve_bulkdata(item["7FE00010"]["BulkDataURI"])
    assert pixels[0] == first.PixelData
    study_level = city.client.retrieve_study_metadata(first.StudyInstanceUID)
    assert len(study_level) == 12
    one = city.client.retrieve_instance_metadata(first.StudyInstanceUID,
                                                 first.SeriesInstanceUID, first.SOPInstanceUID)
    check_dicom_json(one)
    # metadata of every other stored file validates too
    for data in stored["files"]:
        ds = read(data)
        check_dicom_json(city.client.retrieve_instance_metadata(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))


def _instance_path(ds: Dataset) -> str:
    return (f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def test_frames_native_compressed_and_decoded(city: Api, stored: dict[str, list[bytes]]) -> None:
    c = city.client
    ct = read(stored["ivanov"][0])
    frames = c.retrieve_instance_frames(ct.StudyInstanceUID, ct.SeriesInstanceUID,
                                        ct.SOPInstanceUID, [1])
    assert frames == [ct.PixelData]
    multi = read(stored["files"][3])  # 15 native frames, implicit VR
    size = multi.Rows * multi.Columns * multi.BitsAllocated // 8
    got = c.retrieve_instance_frames(multi.StudyInstanceUID, multi.SeriesInstanceUID,
                                     multi.SOPInstanceUID, [2, 5])
    assert got == [multi.PixelData[size:2 * size], multi.PixelData[4 * size:5 * size]]
    big = read(stored["files"][4])  # big endian: frames come little endian
    got = c.retrieve_instance_frames(big.StudyInstanceUID, big.SeriesInstanceUID,
                                     big.SOPInstanceUID, [1])
    assert got == [big.pixel_array.astype("<i2").tobytes()]
    j2k = read((FILES / "JPEG2000.dcm").read_bytes())
    stored_frame = get_frame(j2k.PixelData, 0, number_of_frames=1)
    as_stored = c.retrieve_instance_frames(j2k.StudyInstanceUID, j2k.SeriesInstanceUID,
                                           j2k.SOPInstanceUID, [1], media_types=("image/jp2",))
    assert as_stored == [stored_frame]
    parts = city.parts(_instance_path(j2k) + "/frames/1",
                       'multipart/related; type="application/octet-stream"; transfer-syntax=*')
    assert parts == [stored_frame]
    decoded = city.parts(_instance_path(j2k) + "/frames/1",
                         'multipart/related; type="application/octet-stream"; '
                         f"transfer-syntax={ExplicitVRLittleEndian}")
    assert decoded == [j2k.pixel_array.astype(j2k.pixel_array.dtype.newbyteorder("<")).tobytes()]
    htj2k = city.get(_instance_path(j2k) + "/frames/1", 'multipart/related; type="image/jphc"')
    assert htj2k.status_code == 406 and "HTJ2K" in htj2k.json()["error"]


def test_transfer_syntax_negotiation_of_instances(city: Api, stored: dict[str, list[bytes]]
                                                  ) -> None:
    implicit = (FILES / "MR_small_implicit.dcm").read_bytes()
    ds = read(implicit)
    path = _instance_path(ds)
    [explicit] = city.parts(path, 'multipart/related; type="application/dicom"; '
                                  f"transfer-syntax={ExplicitVRLittleEndian}")
    converted = read(explicit)
    assert converted.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert converted.PixelData == ds.PixelData and converted.PatientName == ds.PatientName
    [as_is] = city.parts(path, 'multipart/related; type="application/dicom"; transfer-syntax=*')
    assert as_is == implicit
    j2k = read((FILES / "JPEG2000.dcm").read_bytes())
    refused = city.get(_instance_path(j2k), 'multipart/related; type="application/dicom"; '
                                            "transfer-syntax=1.2.840.10008.1.2.4.201")
    assert refused.status_code == 406
    # alternatives in the Accept header: the first one that can be served wins
    [j2k_back] = city.parts(_instance_path(j2k), 'multipart/related; type="application/dicom"; '
                            "transfer-syntax=1.2.840.10008.1.2.4.201, multipart/related; "
                            'type="application/dicom"; transfer-syntax=*')
    assert j2k_back == (FILES / "JPEG2000.dcm").read_bytes()
    [decompressed] = city.parts(_instance_path(j2k), 'multipart/related; type="application/'
                                f'dicom"; transfer-syntax={ExplicitVRLittleEndian}')
    assert read(decompressed).pixel_array.tolist() == j2k.pixel_array.tolist()


def test_rendered_and_thumbnails(city: Api, stored: dict[str, list[bytes]]) -> None:
    ct = read(stored["ivanov"][5])
    path = _instance_path(ct)
    jpeg = city.client.retrieve_instance_rendered(ct.StudyInstanceUID, ct.SeriesInstanceUID,
                                                  ct.SOPInstanceUID)
    assert jpeg[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(jpeg)).size == (96, 96)
    png = city.get(path + "/rendered", "image/png", window="-600,1500", viewport="48,48")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png.content)).size == (48, 48)
    lung = Image.open(io.BytesIO(city.get(path + "/rendered", "image/png",
                                          window="-600,1500").content))
    soft = Image.open(io.BytesIO(city.get(path + "/rendered", "image/png",
                                          window="40,400").content))
    assert lung.tobytes() != soft.tobytes()
    frame = city.get(path + "/frames/1/rendered", "image/jpeg", quality="50")
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    rgb = read((FILES / "SC_rgb_rle.dcm").read_bytes())
    color = Image.open(io.BytesIO(city.get(_instance_path(rgb) + "/rendered", "image/png").content))
    assert color.mode == "RGB"
    series_path = f"/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
    for thumb_path in (f"/studies/{ct.StudyInstanceUID}", series_path, path):
        thumb = city.get(thumb_path + "/thumbnail", "image/jpeg")
        assert thumb.status_code == 200, thumb.text
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 128
    assert city.get(path + "/rendered", "image/gif").status_code == 406
    assert city.get(path + "/rendered", window="1,2,3,4").status_code == 400


# -- STOW-RS and failures ----------------------------------------------------------------------


def test_stow_with_dicomweb_client_and_failure_reasons(city: Api) -> None:
    smith = [read(d) for d in ct_series(PatientSpec("DW-010", "Smith^John", "", "M"), 2,
                                         "dw-smith")]
    answer = city.client.store_instances(smith)
    assert len(answer.ReferencedSOPSequence) == 2
    assert "FailedSOPSequence" not in answer
    # the same instance with other content: 0x0111, nothing stored -> 409
    changed = smith[0].copy()
    changed.PatientName = "Other^Name"
    conflict = city.stow([encoded(changed)])
    assert conflict.status_code == 409
    check_dicom_json(conflict.json())
    assert values(values(conflict.json(), "00081198")[0], "00081197") == [0x0111]
    # into another study's URL: that instance fails (A900); another stored: 202
    fresh = ct_series(PatientSpec("DW-011", "Jones^Ann", "", "F"), 2, "dw-jones")
    target = read(fresh[0]).StudyInstanceUID
    mixed = city.stow([fresh[0], encoded(smith[0])], study=target)
    assert mixed.status_code == 202, mixed.text
    body = mixed.json()
    check_dicom_json(body)
    assert values(values(body, "00081198")[0], "00081197") == [0xA900]
    assert len(values(body, "00081199")) == 1
    assert values(body, "00081190") == [f"{city.base}/studies/{target}"]
    # identical resend is a success (idempotent)
    assert city.stow([fresh[0]]).status_code == 200
    # garbage: cannot understand
    garbage = city.stow([b"not dicom at all"])
    assert garbage.status_code == 409
    assert values(values(garbage.json(), "00081198")[0], "00081197") == [0xC000]


def test_bad_requests_answer_with_reasons(city: Api, stored: dict[str, list[bytes]]) -> None:
    ct = read(stored["ivanov"][0])
    path = _instance_path(ct)
    cases = [
        (city.get("/studies", limit="abc"), 400),
        (city.get("/studies", offset="-1"), 400),
        (city.get("/studies", NoSuchKeyword="x"), 400),
        (city.get("/studies", includefield="Nonsense"), 400),
        (city.get("/studies", PatientBirthDate="2020-"), 200),
        (city.get("/studies", accept="application/dicom+xml"), 406),
        (city.get("/studies/1.2.3.4"), 404),
        (city.get("/studies/1.2.3.4/series"), 404),
        (city.get(f"/studies/{ct.StudyInstanceUID}/series/1.2.3/metadata"), 404),
        (city.get(f"/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
                  "/instances/1.2.3"), 404),
        (city.get(path + "/frames/x"), 400),
        (city.get(path + "/frames/0"), 400),
        (city.get(path + "/frames/99"), 404),
        (city.get(path + "/bulkdata/00100010"), 404),
        (city.get(path, 'multipart/related; type="application/zip"'), 406),
        (city.get(path + "/metadata", "multipart/related; type=\"application/dicom+xml\""), 406),
        (requests.get(city.base + "/studies", timeout=10), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.url, response.text)
        if status != 200:
            assert isinstance(response.json()["error"], str)
    post = dict(city.headers)
    for content_type, body, status in (
        ("application/json", b"{}", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', b"", 415),
        ('multipart/related; type="application/dicom"; boundary=abc', b"--abc\r\nbroken", 400),
        ('multipart/related; type="application/dicom"; boundary=abc', b"no boundary here", 400),
        ('multipart/related; type="application/dicom"', b"", 400),
        ('multipart/related; type="application/dicom"; boundary=abc', b"--abc--\r\n", 400),
    ):
        answer = requests.post(city.base + "/studies", data=body, timeout=10,
                               headers=dict(post, **{"Content-Type": content_type}))
        assert answer.status_code == status, (content_type, body, answer.text)
        assert "error" in answer.json()


def test_other_institution_sees_nothing(web: WebServer, stored: dict[str, list[bytes]]) -> None:
    regional = Api(web, "regional-center")
    ct = read(stored["ivanov"][0])
    assert regional.client.search_for_studies(search_filters={"PatientID": "DW-001"}) == []
    assert regional.get("/instances", SOPInstanceUID=ct.SOPInstanceUID).json() == []
    path = _instance_path(ct)
    for suffix in ("", "/metadata", "/frames/1", "/rendered", "/thumbnail"):
        assert regional.get(path + suffix).status_code == 404, suffix
    assert regional.get(f"/studies/{ct.StudyInstanceUID}/series").status_code == 404
    # storing into that study's URL is refused as well
    assert regional.stow(stored["ivanov"][:1], study=ct.StudyInstanceUID).status_code == 404


# -- pydicom's corpus through STOW-RS and back ---------------------------------------------------


def _corpus() -> list[tuple[Path, bytes, str]]:
    out = []
    for folder in ("test_files", "charset_files"):
        for path in sorted((DATA / folder).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".gz", ".bz2", ".json", ".xml"):
                continue
            data = path.read_bytes()
            try:
                sop = str(split_part10(data).meta.get("MediaStorageSOPInstanceUID", ""))
            except ValueError:
                sop = ""
            out.append((path, data, sop))
    return out


@pytest.fixture(scope="module")
def corpus_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    # the corpus holds different files with the same SOP Instance UID: each round replaces
    server = WebServer(tmp_path_factory.mktemp("corpus") / "var",
                       extra_env={"CONSILIUM_DICOM_DUPLICATE_POLICY": "replace"}).start()
    yield server
    server.stop()


def test_pydicom_corpus_round_trips(corpus_web: WebServer) -> None:
    api = Api(corpus_web, "regional-center")
    rounds: list[list[tuple[Path, bytes, str]]] = []
    seen: dict[str, int] = defaultdict(int)
    for entry in _corpus():
        number = seen[entry[2]] if entry[2] else 0
        seen[entry[2]] += 1
        while len(rounds) <= number:
            rounds.append([])
        rounds[number].append(entry)
    round_tripped = refused = 0
    reasons: Counter[int] = Counter()
    for batch in rounds:
        answer = api.stow([data for _, data, _ in batch])
        assert answer.status_code in (200, 202, 409), answer.text
        body = answer.json()
        check_dicom_json(body)
        stored = {values(r, "00081155")[0]: values(r, "00081190")[0]
                  for r in values(body, "00081199")}
        failed = values(body, "00081198")
        assert all(values(f, "00081197")[0] in (0xC000, 0xA900, 0xC214) for f in failed), failed
        reasons.update(values(f, "00081197")[0] for f in failed)
        for path, data, sop in batch:
            if sop not in stored:
                refused += 1
                continue
            url = stored[sop][len(api.base):]
            [back] = api.parts(url, 'multipart/related; type="application/dicom"; '
                                    "transfer-syntax=*")
            assert back == data, path.name
            metadata = api.get(url + "/metadata")
            assert metadata.status_code == 200, (path.name, metadata.text)
            check_dicom_json(metadata.json()[0], path.name)
            round_tripped += 1
        assert len(failed) + len(stored) == len(batch)
    assert round_tripped >= 140 and refused >= 1, (round_tripped, refused)
    # JPEG2000-embedded-sequence-delimiter.dcm: its codestream declares 3.7e9 x 1024 pixels
    # (no decoder here reads it; one that tried would allocate terabytes): too large
    assert reasons[0xC214] == 1, reasons


def test_metadata_fast_path_agrees_with_pydicom() -> None:
    """The direct explicit-VR walk of the metadata gives what the pydicom-based path gives
    (except explicit UN values, which it keeps as UN where pydicom guesses the dictionary VR)."""
    from consilium.archive import dicomjson as dj
    from consilium.archive import metadata as md

    def slow(path: Path) -> dict[str, Any]:
        header = md.read_stored_header(path)
        out = dj.dataset_json(header.dataset, "", dj.marker_bulk)
        if header.pixel is not None:
            key = f"{header.pixel.tag:08X}"
            out[key] = {"vr": header.pixel.vr, "BulkDataURI": dj.marker_bulk(key)}
        return out

    compared = 0
    for path, data, _sop in _corpus():
        try:
            fast = md._fast_metadata(memoryview(data))
            expected = slow(path) if fast is not None else None
        except Exception:
            continue  # files pydicom cannot read are the corpus' broken ones
        if fast is None or expected is None:
            continue
        compared += 1
        for key in set(fast) | set(expected):
            if fast.get(key) != expected.get(key):
                assert fast.get(key, {}).get("vr") == "UN", (path.name, key)
    assert compared >= 150


def test_json_answers_are_gzipped_for_clients_that_accept_it(
        city: Api, stored: dict[str, list[bytes]]) -> None:
    first = read(stored["ivanov"][0])
    path = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}/metadata"
    url = city.base + path
    plain = requests.get(url, headers={**city.headers, "Accept-Encoding": "identity"},
                         timeout=60)
    zipped = requests.get(url, headers={**city.headers, "Accept-Encoding": "gzip"},
                          stream=True, timeout=60)
    wire = zipped.raw.read(decode_content=False)
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(wire) == plain.content  # the same answer, smaller on the wire
    assert len(wire) < len(plain.content) // 3
    search = requests.get(city.base + "/instances", timeout=60,
                          headers={**city.headers, "Accept-Encoding": "gzip"})
    assert search.headers.get("content-encoding") == "gzip" and len(search.json()) >= 15
