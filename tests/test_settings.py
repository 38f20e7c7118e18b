"""The one settings object: defaults, TOML, environment, overrides, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consilium.settings import DuplicatePolicy, NodeKind, load_settings

CONFIG = Path(__file__).resolve().parent.parent / "config" / "consilium.toml"


def test_embedded_default_config_loads() -> None:
    s = load_settings(CONFIG, environ={})
    assert s.dicom_ae_title == "CONSILIUM"
    assert s.dicom_port == 11112
    assert s.demo_data is True
    assert [i.id for i in s.institutions] == ["city-hospital", "regional-center"]
    inst, node = s.node_by_ae("CITY_CT1") or (None, None)
    assert inst is not None and inst.id == "city-hospital"
    assert node is not None and node.kind is NodeKind.MODALITY
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("/var/consilium.db")


def test_environment_overrides_toml_and_overrides_win(tmp_path: Path) -> None:
    env = {
        "CONSILIUM_DICOM_PORT": "11999",
        "CONSILIUM_DICOM_AE_TITLE": "ENVAE",
        "CONSILIUM_DICOM_DUPLICATE_POLICY": "replace",
        "CONSILIUM_INSTITUTIONS": json.dumps(
            [{"id": "h1", "name": "H1", "nodes": [{"ae_title": "H1_CT"}]}]
        ),
    }
    s = load_settings(CONFIG, overrides={"dicom_port": 12000, "data_dir": tmp_path}, environ=env)
    assert s.dicom_port == 12000  # explicit override beats the environment
    assert s.dicom_ae_title == "ENVAE"  # environment beats TOML
    assert s.dicom_duplicate_policy is DuplicatePolicy.REPLACE
    assert [i.id for i in s.institutions] == ["h1"]
    assert s.effective_database_url == f"sqlite:///{(tmp_path / 'consilium.db').resolve()}"


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[dicom]\nae_title = "FROMFILE"\n')
    s = load_settings(environ={"CONSILIUM_CONFIG": str(cfg)})
    assert s.dicom_ae_title == "FROMFILE"


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[dicom]\nport = 70000\n", "dicom_port"),
        ("[dicom]\nunknown_key = 1\n", "dicom_unknown_key"),
        (
            '[[institutions]]\nid = "a"\nname = "A"\nnodes = [{ae_title = "X"}]\n'
            '[[institutions]]\nid = "b"\nname = "B"\nnodes = [{ae_title = "X"}]\n',
            "AE title 'X' is configured for both",
        ),
        ('[[institutions]]\nid = "Bad Id"\nname = "A"\n', "institutions.0.id"),
    ],
)
def test_invalid_configuration_is_refused_with_the_reason(
    tmp_path: Path, toml: str, message: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ValueError, match=message):
        load_settings(cfg, environ={})
