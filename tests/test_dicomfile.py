"""Structure checks and header decoding on real files of pydicom's corpus."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from consilium.archive.dicomfile import (
    UnreadableDicom,
    build_file_meta,
    check_structure,
    read_header,
    split_part10,
)
from tests.conftest import pydicom_data_dir

DATA = pydicom_data_dir()
WELL_FORMED = [
    "test_files/CT_small.dcm",  # explicit VR LE
    "test_files/MR_small_implicit.dcm",
    "test_files/MR_small_bigendian.dcm",
    "test_files/JPEG2000.dcm",  # encapsulated pixel data
    "test_files/MR_small_RLE.dcm",
    "test_files/image_dfl.dcm",  # deflated
    "test_files/examples_ybr_color.dcm",  # multi-frame colour US, JPEG baseline
    "test_files/rtplan.dcm",  # nested sequences
    "charset_files/chrRuss.dcm",
]


def _split(name: str) -> tuple[bytes, int, str]:
    data = (DATA / name).read_bytes()
    part10 = split_part10(data)
    return data, part10.dataset_offset, part10.transfer_syntax


@pytest.mark.parametrize("name", WELL_FORMED)
def test_complete_files_pass_and_every_truncation_inside_a_value_is_caught(name: str) -> None:
    data, offset, ts = _split(name)
    check_structure(memoryview(data)[offset:], ts)
    # cut inside the last element's value (pixel data for images): must be refused
    for cut in (len(data) - 1, len(data) - 3):
        if name.endswith("image_dfl.dcm"):
            continue  # deflate streams may end in padding; see the dedicated test
        with pytest.raises(UnreadableDicom, match="truncated"):
            check_structure(memoryview(data)[offset:cut], ts)
    with pytest.raises(UnreadableDicom):
        check_structure(memoryview(data)[offset : offset + (len(data) - offset) // 2 + 1], ts)


def test_truncated_deflated_stream_is_refused() -> None:
    data, offset, ts = _split("test_files/image_dfl.dcm")
    body = data[offset:]
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
    with pytest.raises(UnreadableDicom):
        check_structure(body[: len(body) // 2], ts)


def test_garbage_and_empty_are_refused() -> None:
    with pytest.raises(UnreadableDicom):
        check_structure(b"\x08\x00\x05\x00CS\xff\xffgarbage", "1.2.840.10008.1.2.1")
    with pytest.raises(UnreadableDicom, match="empty"):
        check_structure(b"", "1.2.840.10008.1.2.1")
    with pytest.raises(UnreadableDicom, match="DICM"):
        split_part10(b"\x00" * 200)


def test_pydicoms_own_truncated_files_are_refused() -> None:
    for name in ("test_files/MR_truncated.dcm", "test_files/rtplan_truncated.dcm"):
        data, offset, ts = _split(name)
        with pytest.raises(UnreadableDicom, match="truncated"):
            check_structure(memoryview(data)[offset:], ts)


def test_cyrillic_names_are_decoded_through_their_character_set() -> None:
    header = read_header((DATA / "charset_files/chrRuss.dcm").read_bytes())  # ISO_IR 144
    assert header.patient_name == "Люкceмбypг"
    header = read_header((DATA / "charset_files/chrX1.dcm").read_bytes())  # ISO_IR 192
    assert header.patient_name == "Wang^XiaoDong=王^小東"


def test_header_of_a_multiframe_file() -> None:
    header = read_header((DATA / "test_files/examples_ybr_color.dcm").read_bytes())
    assert header.number_of_frames == 30
    assert (header.rows, header.columns) == (240, 320)
    assert header.modality == "US"


def test_built_file_meta_wraps_the_received_dataset_unchanged(tmp_path: Path) -> None:
    data, offset, ts = _split("test_files/CT_small.dcm")
    header = read_header(data)
    meta = build_file_meta(header.sop_class_uid, header.sop_instance_uid, ts, "CITY_CT1")
    rebuilt = meta + data[offset:]
    part10 = split_part10(rebuilt)
    assert rebuilt[part10.dataset_offset :] == data[offset:]
    assert part10.meta.SourceApplicationEntityTitle == "CITY_CT1"
    assert read_header(rebuilt) == header


def test_the_plain_header_path_agrees_with_pydicom_on_the_whole_corpus() -> None:
    """check_structure decodes plain ASCII headers itself; read_header always uses pydicom."""
    from consilium.archive.dicomfile import _HEADER_TAGS, Encoding, _plain_header, _Walker

    compared = plain = 0
    for path in sorted(DATA.rglob("*.dcm")):
        data = path.read_bytes()
        try:
            part10 = split_part10(data)
            header = check_structure(memoryview(data)[part10.dataset_offset:],
                                     part10.transfer_syntax)
            reference = read_header(data)
        except (UnreadableDicom, ValueError):
            continue  # refused files have their own tests
        assert header == reference, path.name
        compared += 1
        encoding = Encoding.of(part10.transfer_syntax)
        if not encoding.deflated:
            view = memoryview(data)[part10.dataset_offset:]
            walker = _Walker(view, encoding, _HEADER_TAGS)
            walker.dataset(0, encoding.implicit_vr, stop_at_item_end=False)
            plain += _plain_header(view, walker.found, encoding) is not None
    assert compared > 80 and plain > compared // 2, (compared, plain)  # most take the plain path
