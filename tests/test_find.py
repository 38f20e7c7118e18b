"""C-FIND through dcmtk's findscu against a running archive, with exact expected matches.

The archive holds a small, fully known population (pydicom's ISO_IR 144 Cyrillic file plus
generated instances, one of them ISO_IR 192), sent by an AE of city-hospital, and one study sent
by REG_CT1 of regional-center. findscu writes each response to a file (``-X``); pydicom reads
them, decoding names through their Specific Character Set.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    MRImageStorage,
    generate_uid,
)

from consilium import synthetic
from tests.conftest import ConsiliumServer, dcmtk, pydicom_data_dir, storescu_statuses

pytestmark = pytest.mark.usefixtures("dcmtk_available")

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "CR": ComputedRadiographyImageStorage}
RUSS = pydicom_data_dir() / "charset_files" / "chrRuss.dcm"
RUSS_NAME = "Люкceмбypг"  # as pydicom decodes it: Cyrillic with some Latin letters (c, e, y, p)


@dataclass(frozen=True)
class Study:
    key: str
    patient_id: str
    patient_name: str
    date: str
    series: tuple[tuple[str, int], ...]  # (modality, number of instances)
    charset: str = "ISO_IR 100"
    uid: str = ""


# city-hospital's population (besides chrRuss.dcm: patient SCSRUSS, one OT study, no date)
CITY = (
    Study("ivanov-2023", "RU-192", "Иванов^Иван", "20230115", (("CT", 3), ("MR", 2)),
          "ISO_IR 192"),
    Study("ivanov-2024", "RU-192", "Иванов^Иван", "20240105", (("CT", 1),), "ISO_IR 192"),
    Study("smith", "SM-1", "Smith^John", "20230620", (("MR", 2),)),
    Study("smyth", "SM-2", "SMYTH^JANE", "20231231", (("CT", 1),)),
    Study("smithson", "SM-3", "Smithson^Al", "20220301", (("CR", 1),)),
)
# regional-center: the same patient ID and name as city's SM-1, another hospital's record
REGIONAL = Study("regional", "SM-1", "Smith^John", "20230620", (("CT", 2),))


@dataclass(frozen=True)
class Population:
    server: ConsiliumServer
    studies: dict[str, Study]  # key -> study with its UID
    series: dict[str, list[tuple[str, str, list[str]]]]  # key -> [(modality, uid, [sop uids])]
    russ_study: str


def write_study(study: Study, folder: Path) -> tuple[Study, list[tuple[str, str, list[str]]]]:
    study_uid = generate_uid()
    series_out = []
    number = itertools.count(1)
    for series_number, (modality, count) in enumerate(study.series, start=1):
        series_uid = generate_uid()
        sops = []
        for _ in range(count):
            ds = synthetic.image(
                SOP_CLASSES[modality], modality=modality, SpecificCharacterSet=study.charset,
                StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                PatientName=study.patient_name, PatientID=study.patient_id,
                PatientBirthDate="19700101", PatientSex="M", StudyDate=study.date,
                StudyTime="101500", AccessionNumber=f"ACC-{study.key}", StudyID="1",
                StudyDescription=f"study {study.key}", ReferringPhysicianName="",
                SeriesNumber=series_number, InstanceNumber=next(number))
            synthetic.write(ds, folder / f"{ds.SOPInstanceUID}.dcm")
            sops.append(str(ds.SOPInstanceUID))
        series_out.append((modality, str(series_uid), sops))
    return Study(**{**study.__dict__, "uid": str(study_uid)}), series_out


def store(server: ConsiliumServer, calling_ae: str, folder: Path) -> None:
    files = sorted(folder.iterdir())
    run = dcmtk("storescu", "-d", "-aet", calling_ae, *server.address(), *map(str, files))
    assert storescu_statuses(run.stderr) == {str(p): 0 for p in files}, run.stderr[-2000:]


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Population]:
    root = tmp_path_factory.mktemp("find")
    studies: dict[str, Study] = {}
    series: dict[str, list[tuple[str, str, list[str]]]] = {}
    for study in (*CITY, REGIONAL):
        folder = root / ("regional" if study is REGIONAL else "city")
        written, written_series = write_study(study, folder)
        studies[study.key] = written
        series[study.key] = written_series
    shutil.copy(RUSS, root / "city" / "chrRuss.dcm")
    server = ConsiliumServer(root / "var").start()
    try:
        store(server, "STORESCU", root / "city")
        store(server, "REG_CT1", root / "regional")
        yield Population(server, studies, series, str(pydicom.dcmread(RUSS).StudyInstanceUID))
    finally:
        server.stop()


_calls = itertools.count()


def find(population: Population, model: str, level: str, keys: dict[str, str],
         calling_ae: str = "FINDSCU", charset: str | None = "ISO_IR 192") -> list[Dataset]:
    """findscu with ``-P``/``-S`` at ``level``; ``keys`` are matching and return keys (an empty
    value only asks for the attribute). Values may be str already encoded for the wire as
    surrogate-escaped bytes (see :func:`raw`)."""
    server = population.server
    out = server.data_dir.parent / f"find-{next(_calls)}"
    out.mkdir()
    args = [model, "-X", "-od", str(out), "-aet", calling_ae, *server.address(),
            "-k", f"QueryRetrieveLevel={level}"]
    if charset:
        args += ["-k", f"SpecificCharacterSet={charset}"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    run = dcmtk("findscu", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def raw(text: str, codec: str) -> str:
    """``text`` encoded in ``codec``, as a str that subprocess turns back into those bytes."""
    return os.fsdecode(text.encode(codec))


def values(responses: list[Dataset], keyword: str) -> list[str]:
    return sorted(str(r.get(keyword, "")) for r in responses)


# -- patient level ------------------------------------------------------------------------------


def test_iso_ir_144_name_found_by_a_utf8_wildcard_query(population: Population) -> None:
    found = find(population, "-P", "PATIENT", {"PatientName": "Люк*", "PatientID": ""})
    assert [(str(r.PatientName), r.PatientID) for r in found] == [(RUSS_NAME, "SCSRUSS")]
    assert found[0].SpecificCharacterSet == "ISO_IR 192"


def test_iso_ir_144_name_found_by_an_iso_ir_144_query(population: Population) -> None:
    found = find(population, "-P", "PATIENT",
                 {"PatientName": raw("люк*", "iso8859_5"), "PatientID": ""}, charset="ISO_IR 144")
    assert [(str(r.PatientName), r.PatientID) for r in found] == [(RUSS_NAME, "SCSRUSS")]


def test_iso_ir_192_names_match_case_insensitively(population: Population) -> None:
    for name in ("иванов*", "ИВАНОВ^ИВАН", "иванов^иван", "*ван"):
        found = find(population, "-P", "PATIENT", {"PatientName": name, "PatientID": ""})
        assert [(str(r.PatientName), r.PatientID) for r in found] == [
            ("Иванов^Иван", "RU-192")], name


@pytest.mark.parametrize(("pattern", "expected"), [
    ("sm?th*", ["SM-1", "SM-2", "SM-3"]),
    ("Sm?th^*", ["SM-1", "SM-2"]),
    ("*son*", ["SM-3"]),
    ("smith^john", ["SM-1"]),
    ("SMITH", []),
    ("?mithson^??", ["SM-3"]),
    ("*", ["RU-192", "SCSRUSS", "SM-1", "SM-2", "SM-3"]),
])
def test_patient_name_wildcards(population: Population, pattern: str,
                                expected: list[str]) -> None:
    found = find(population, "-P", "PATIENT", {"PatientName": pattern, "PatientID": ""})
    assert values(found, "PatientID") == expected


def test_universal_matching_and_patient_counts(population: Population) -> None:
    found = find(population, "-P", "PATIENT", {
        "PatientName": "", "PatientID": "", "NumberOfPatientRelatedStudies": "",
        "NumberOfPatientRelatedSeries": "", "NumberOfPatientRelatedInstances": "",
    })
    counts = {r.PatientID: (int(r.NumberOfPatientRelatedStudies),
                            int(r.NumberOfPatientRelatedSeries),
                            int(r.NumberOfPatientRelatedInstances)) for r in found}
    assert counts == {"SCSRUSS": (1, 1, 1), "RU-192": (2, 3, 6), "SM-1": (1, 1, 2),
                      "SM-2": (1, 1, 1), "SM-3": (1, 1, 1)}
    assert len(found) == 5  # one response per patient, the regional SM-1 is not city's


# -- study level ----------------------------------------------------------------------------------


def study_keys(population: Population, found: list[Dataset]) -> list[str]:
    by_uid = {s.uid: k for k, s in population.studies.items()}
    by_uid[population.russ_study] = "russ"
    return sorted(by_uid[r.StudyInstanceUID] for r in found)


@pytest.mark.parametrize(("dates", "expected"), [
    ("20230101-20231231", ["ivanov-2023", "smith", "smyth"]),
    ("-20230620", ["ivanov-2023", "smith", "smithson"]),
    ("20240101-", ["ivanov-2024"]),
    ("20230620", ["smith"]),
    ("20230116-20230619", []),
    ("", ["ivanov-2023", "ivanov-2024", "russ", "smith", "smithson", "smyth"]),
])
def test_study_date_matching(population: Population, dates: str, expected: list[str]) -> None:
    for model in ("-S", "-P"):
        found = find(population, model, "STUDY", {"StudyDate": dates, "StudyInstanceUID": "",
                                                  "PatientID": ""})
        assert study_keys(population, found) == expected, model


def test_study_uid_list_matching(population: Population) -> None:
    s = population.studies
    uids = "\\".join([s["ivanov-2023"].uid, s["smyth"].uid, "1.2.3.4.5.6.7.8.9"])
    found = find(population, "-S", "STUDY", {"StudyInstanceUID": uids, "PatientName": ""})
    assert study_keys(population, found) == ["ivanov-2023", "smyth"]
    assert values(found, "PatientName") == sorted(["Иванов^Иван", "SMYTH^JANE"])


def multi(value: object) -> list[str]:
    """A CS value of any multiplicity as a list."""
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, MultiValue) else [str(value)]


def test_modalities_in_study_and_related_counts(population: Population) -> None:
    keys = {"StudyInstanceUID": "", "ModalitiesInStudy": "",
            "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": ""}
    found = find(population, "-S", "STUDY", keys)
    summary = {study_keys(population, [r])[0]: (
        multi(r.get("ModalitiesInStudy")), int(r.NumberOfStudyRelatedSeries),
        int(r.NumberOfStudyRelatedInstances)) for r in found}
    assert len(summary) == len(found)
    assert summary == {
        "ivanov-2023": (["CT", "MR"], 2, 5), "ivanov-2024": (["CT"], 1, 1),
        "smith": (["MR"], 1, 2), "smyth": (["CT"], 1, 1), "smithson": (["CR"], 1, 1),
        "russ": (["OT"], 1, 1),
    }
    mr = find(population, "-S", "STUDY", {**keys, "ModalitiesInStudy": "MR"})
    assert study_keys(population, mr) == ["ivanov-2023", "smith"]
    cr_or_ot = find(population, "-S", "STUDY", {**keys, "ModalitiesInStudy": "CR\\OT"})
    assert study_keys(population, cr_or_ot) == ["russ", "smithson"]


def test_patient_root_study_level_within_a_patient(population: Population) -> None:
    found = find(population, "-P", "STUDY", {"PatientID": "RU-192", "StudyInstanceUID": "",
                                             "StudyDate": ""})
    assert study_keys(population, found) == ["ivanov-2023", "ivanov-2024"]
    assert values(found, "StudyDate") == ["20230115", "20240105"]


def test_study_root_refuses_patient_level(population: Population) -> None:
    server = population.server
    run = dcmtk("findscu", "-d", "-S", "-aet", "FINDSCU", *server.address(),
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientName=*")
    statuses = [line.split(":", 2)[2].strip()[:6] for line in run.stderr.splitlines()
                if line.startswith("D: DIMSE Status")]
    assert statuses == ["0xc310"], run.stderr[-3000:]
    assert "PATIENT level is not part of the Study Root" in server.log


# -- series and image level ----------------------------------------------------------------------


def test_series_level_with_counts_and_modality_filter(population: Population) -> None:
    study = population.studies["ivanov-2023"]
    expected = {uid: (modality, len(sops))
                for modality, uid, sops in population.series["ivanov-2023"]}
    for model, extra in (("-S", {}), ("-P", {"PatientID": "RU-192"})):
        found = find(population, model, "SERIES", {
            **extra, "StudyInstanceUID": study.uid, "SeriesInstanceUID": "", "Modality": "",
            "NumberOfSeriesRelatedInstances": ""})
        assert {r.SeriesInstanceUID: (r.Modality, int(r.NumberOfSeriesRelatedInstances))
                for r in found} == expected
        assert len(found) == 2
    mr = find(population, "-S", "SERIES", {"StudyInstanceUID": study.uid,
                                           "SeriesInstanceUID": "", "Modality": "MR"})
    assert [r.SeriesInstanceUID for r in mr] == [
        uid for modality, uid, _ in population.series["ivanov-2023"] if modality == "MR"]


def test_image_level_matches_exact_instances(population: Population) -> None:
    study = population.studies["ivanov-2023"]
    (_, ct_series, ct_sops), (_, mr_series, mr_sops) = population.series["ivanov-2023"]
    found = find(population, "-S", "IMAGE", {"StudyInstanceUID": study.uid,
                                             "SeriesInstanceUID": ct_series,
                                             "SOPInstanceUID": "", "InstanceNumber": ""})
    assert sorted(r.SOPInstanceUID for r in found) == sorted(ct_sops)
    assert sorted(int(r.InstanceNumber) for r in found) == [1, 2, 3]
    wanted = [ct_sops[0], mr_sops[1]]
    found = find(population, "-P", "IMAGE", {
        "PatientID": "RU-192", "StudyInstanceUID": study.uid, "SeriesInstanceUID": "",
        "SOPInstanceUID": "\\".join(wanted), "SOPClassUID": ""})
    assert sorted((r.SOPInstanceUID, r.SeriesInstanceUID, r.SOPClassUID) for r in found) == \
        sorted([(ct_sops[0], ct_series, CTImageStorage), (mr_sops[1], mr_series, MRImageStorage)])
    everything = find(population, "-S", "IMAGE", {"SOPInstanceUID": ""})
    assert len(everything) == 1 + 5 + 1 + 2 + 1 + 1  # city's instances only


# -- institutions ---------------------------------------------------------------------------------


def test_another_institution_sees_only_its_own_studies(population: Population) -> None:
    s = population.studies
    city_study_uids = {st.uid for k, st in s.items() if k != "regional"} | {population.russ_study}
    regional = find(population, "-S", "STUDY", {"StudyInstanceUID": "", "PatientName": ""},
                    calling_ae="REG_CT1")
    assert [(r.StudyInstanceUID, str(r.PatientName)) for r in regional] == [
        (s["regional"].uid, "Smith^John")]
    city = find(population, "-S", "STUDY", {"StudyInstanceUID": ""})
    assert {r.StudyInstanceUID for r in city} == city_study_uids
    # asked by UID, the other institution's studies do not exist
    uids = "\\".join(sorted(city_study_uids))
    assert find(population, "-S", "STUDY", {"StudyInstanceUID": uids},
                calling_ae="REG_CT1") == []
    assert find(population, "-S", "STUDY", {"StudyInstanceUID": s["regional"].uid}) == []
    for level, keys in (("SERIES", {"StudyInstanceUID": s["smith"].uid,
                                     "SeriesInstanceUID": ""}),
                        ("IMAGE", {"StudyInstanceUID": s["smith"].uid, "SOPInstanceUID": ""})):
        assert find(population, "-P", level, keys, calling_ae="REG_CT1") == [], level
    patients = find(population, "-P", "PATIENT",
                    {"PatientID": "SM-1", "NumberOfPatientRelatedStudies": ""},
                    calling_ae="REG_CT1")
    assert [(r.PatientID, int(r.NumberOfPatientRelatedStudies)) for r in patients] == [
        ("SM-1", 1)]
    images = find(population, "-S", "IMAGE", {"SOPInstanceUID": ""}, calling_ae="REG_CT1")
    assert sorted(r.SOPInstanceUID for r in images) == sorted(population.series["regional"][0][2])
