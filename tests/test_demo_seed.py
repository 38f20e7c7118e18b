"""`make run`'s demo data: generated CTs of two hospitals plus pydicom's files, seeded once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import CONFIG, CONSILIUM


def _seed(data_dir: Path) -> str:
    env = dict(os.environ, CONSILIUM_DEMO_CT_SLICES="3")
    run = subprocess.run([str(CONSILIUM), "seed-demo", "--config", str(CONFIG), "--data-dir",
                          str(data_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_demo_data_of_two_hospitals(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    out = _seed(data_dir)
    assert "Иванов^Иван^Петрович (city-hospital): 3 CT slices stored" in out
    assert "Соколов^Дмитрий (regional-center): 3 CT slices stored" in out
    with sqlite3.connect(data_dir / "consilium.db") as conn:
        owners = dict(conn.execute(
            "SELECT institution_id, COUNT(*) FROM study GROUP BY institution_id").fetchall())
        names = {r[0] for r in conn.execute("SELECT patient_name FROM patient")}
        instances = conn.execute("SELECT COUNT(*) FROM instance").fetchone()[0]
    assert set(owners) == {"city-hospital", "regional-center"}
    assert {"Иванов^Иван^Петрович", "Smirnova^Olga", "Соколов^Дмитрий", "Люкceмбypг"} <= names
    assert instances > 100  # the generated slices and pydicom's real files
    # the demo UIDs are fixed: seeding again stores no new instance
    again = _seed(data_dir)
    assert "0 CT slices stored" in again
    with sqlite3.connect(data_dir / "consilium.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM instance").fetchone()[0] == instances
