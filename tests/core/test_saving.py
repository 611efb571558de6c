"""Atomic writes: nothing half-written, nothing overwritten without consent."""
import os

import pytest

from migrator.core.errors import MigratorError
from migrator.core.saving import atomic_write, companion_paths, format_of, write_text


def test_no_overwrite_without_force(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    with pytest.raises(MigratorError) as e:
        write_text(str(p), "new")
    assert "exists" in str(e.value) and str(p) in str(e.value)
    assert p.read_text() == "old"
    write_text(str(p), "new", force=True)
    assert p.read_text() == "new"


def test_failed_writer_leaves_nothing(tmp_path):
    p = tmp_path / "m.keras"

    def bad(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(str(p), bad)
    assert os.listdir(tmp_path) == []


def test_temp_keeps_suffix(tmp_path):
    seen = []
    atomic_write(str(tmp_path / "m.weights.h5"), lambda t: (seen.append(t), open(t, "w").close()))
    assert seen[0].endswith(".weights.h5") and os.path.dirname(seen[0]) == str(tmp_path)
    assert os.listdir(tmp_path) == ["m.weights.h5"]


def test_formats():
    assert format_of("a.keras") == "keras" and format_of("a.h5") == "h5"
    assert format_of("a.weights.h5") == "weights"
    with pytest.raises(MigratorError):
        format_of("a.onnx")
    assert companion_paths("x/m.keras", ["h5", "weights"]) == ["x/m.keras", "x/m.h5", "x/m.weights.h5"]


def test_missing_dir(tmp_path):
    with pytest.raises(MigratorError) as e:
        write_text(str(tmp_path / "nope" / "r.json"), "x")
    assert "does not exist" in str(e.value)
