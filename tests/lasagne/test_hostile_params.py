"""Hostile and broken Lasagne parameter files (issue 11): each is a one-line MigratorError
naming the file and the layer, read with memory bounded by what the model declares."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.lasagne import describe_builder, load_lasagne
from migrator.core.importers.lasagne.params import PICKLE_MARGIN, load_param_values
from migrator.testing import hostile as H
from migrator.testing import lasagne_models as M

SCRIPT = M.HEADER + '''
def build_model():
    l = InputLayer((None, 3), name='in')
    return DenseLayer(l, 4, name='fc')
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    b = M.write_script(str(d), SCRIPT)
    return b, describe_builder(b)["params"]     # [['fc','W',[3,4]], ['fc','b',[4]]]


def _err(path, expected) -> str:
    with pytest.raises(MigratorError) as ei:
        load_param_values(str(path), expected)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    assert not msg.rstrip().endswith(":"), msg
    return msg


@pytest.mark.parametrize("name,blob,needles", [
    ("memo.pkl", H.memo_bomb(), ["layer 'fc'", "nested deeper than its 2 dimensions"]),
    ("shared.pkl", H.shared_list(), ["holds 20000 parameter arrays", "has 2 parameters"]),
    ("shared2.pkl", H.shared_list_as_param(), ["layer 'fc'", "(20000, 20000)", "(3, 4)"]),
    ("ragged.pkl", H.ragged(), ["layer 'fc'", "param 'W'"]),
    ("deep.pkl", H.too_deep(), ["layer 'fc'", "nested deeper"]),
    ("bb8.pkl", H.binbytes8(), ["not a readable pickle", "larger than the available memory"]),
    ("ext.pkl", H.ext_code(1), ["extension code 1", "copyreg"]),
    ("lie.npz", H.npz_header_lie(), ["layer 'fc'", "(100000, 100000)", "expects (3, 4)"]),
    ("gzbomb.pkl", H.gzip_pickle_bomb(), ["more data than the network's parameters can need"]),
])
def test_hostile_files_are_refused_naming_file_and_layer(tmp_path, model, name, blob, needles):
    p = tmp_path / name
    p.write_bytes(blob)
    msg = _err(p, model[1])
    for n in needles:
        assert n in msg, msg
    assert "MemoryError" not in msg


def test_npz_header_checked_against_member_size_without_a_model(tmp_path):
    """Even without the model's shapes, a header declaring 40 GB over 64 bytes of data is
    refused from the zip entry (no MemoryError, nothing inflated)."""
    p = tmp_path / "lie.npz"
    p.write_bytes(H.npz_header_lie())
    msg = _err(p, None)
    assert "declares shape (100000, 100000) float32" in msg and "holds 64 bytes" in msg


def test_deflate_bomb_npz_refused_from_headers(tmp_path, model):
    p = tmp_path / "bomb.npz"
    p.write_bytes(H.npz_deflate_bomb())
    assert p.stat().st_size < 8 << 20
    msg = _err(p, model[1])
    assert "layer 'fc'" in msg and "expects (3, 4)" in msg


def test_nan_and_inf_refused_naming_the_layer(tmp_path, model):
    b, _ = model
    for bad, word in ((np.nan, "NaN"), (np.inf, "Inf")):
        vals = [np.ones((3, 4), np.float32), np.zeros(4, np.float32)]
        vals[1][2] = bad
        p = M.write_params(str(tmp_path / "p.npz"), vals, "npz")
        with pytest.raises(MigratorError) as ei:
            load_lasagne(b, p)
        msg = str(ei.value)
        assert "layer 'fc'" in msg and word in msg and "param 'b'" in msg and "(1 of 4)" in msg


def test_float64_beyond_float32_refused(tmp_path, model):
    vals = [np.ones((3, 4)), np.array([1.0, 2.0, 1e300, 0.0])]
    p = tmp_path / "big.pkl"
    p.write_bytes(pickle.dumps(vals, protocol=4))
    msg = _err(p, model[1])
    assert "layer 'fc'" in msg and "beyond the float32 range" in msg and "1e+300" in msg


def test_integer_and_bool_arrays_warned_naming_the_layer(tmp_path, model):
    b, exp = model
    p = tmp_path / "int.pkl"
    p.write_bytes(pickle.dumps([np.ones((3, 4), np.int64), np.zeros(4, bool)], protocol=2))
    g = load_lasagne(b, str(p))
    w = [x for x in g.warnings if "int.pkl" in x]
    assert any("layer 'fc'" in x and "integers (dtype int64)" in x for x in w), g.warnings
    assert any("booleans (dtype bool)" in x for x in w), g.warnings
    assert g.node("fc").params["weight"].value.dtype == np.float32
    p.write_bytes(pickle.dumps([np.full((3, 4), 1 << 40, np.int64), np.zeros(4)], protocol=2))
    assert "too large for float32" in _err(p, exp)


def test_nested_lists_of_the_right_shape_still_load(tmp_path, model):
    p = tmp_path / "lists.pkl"
    p.write_bytes(pickle.dumps([[[1.0] * 4] * 3, [0.5] * 4], protocol=0))
    vals, _, _ = load_param_values(str(p), model[1])
    assert vals[0].shape == (3, 4) and vals[1].tolist() == [0.5] * 4


def test_truncated_pickle_names_the_missing_size(tmp_path, model):
    data = pickle.dumps([np.ones((300, 400), np.float32), np.zeros(4, np.float32)], protocol=4)
    p = tmp_path / "trunc.pkl"
    p.write_bytes(data[: len(data) // 2])
    msg = _err(p, [["fc", "W", [300, 400]], ["fc", "b", [4]]])
    assert "truncated" in msg


# ---- peak memory (VmHWM) in a fresh interpreter --------------------------------------------
_MEASURE = textwrap.dedent('''
    import json, sys
    import gzip, io, pickle, zipfile, zlib
    import numpy as np
    from migrator.core.errors import MigratorError
    from migrator.core.importers.lasagne.params import load_param_values
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    expected = json.loads(sys.argv[2])
    # warm up the code paths on a tiny file of each kind (imports, first allocations)
    for p in sys.argv[3:]:
        try:
            load_param_values(p, expected)
        except MigratorError:
            pass
    base = hwm()
    try:
        load_param_values(sys.argv[1], expected)
        outcome = "loaded"
    except MigratorError as e:
        outcome = str(e)
    print(json.dumps({"base": base, "peak": hwm(), "outcome": outcome}))
''')

#: the model of the memory test declares 1,001,000 float32 values (4.0 MB)
MEM_EXPECTED = [["fc", "W", [1000, 1000]], ["fc", "b", [1000]]]
MEM_DECLARED = 4 * 1001000


@pytest.fixture(scope="module")
def warmups(tmp_path_factory):
    d = tmp_path_factory.mktemp("warm")
    small = [np.zeros((3, 3), np.float32)]
    p1, p2, p3 = d / "w.pkl", d / "w.npz", d / "w.pkl.gz"
    p1.write_bytes(pickle.dumps(small, protocol=4))
    np.savez(str(p2), *small)
    import gzip
    p3.write_bytes(gzip.compress(pickle.dumps(small, protocol=4)))
    return [str(p1), str(p2), str(p3)]


@pytest.mark.parametrize("name,blob,limit_extra", [
    ("memo.pkl", H.memo_bomb(), 0),
    ("shared.pkl", H.shared_list_as_param(), 0),
    ("lie.npz", H.npz_header_lie(), 0),
    ("bomb.npz", H.npz_deflate_bomb(), 0),
    ("bb8.pkl", H.binbytes8(), 0),
    ("gzbomb.pkl", H.gzip_pickle_bomb(), 0),
    # a stream of many 256 KiB blocks: read up to the budget (8 bytes per declared value,
    # room for float64 files, + the margin for labels/mean) and then refused: 2x the declared
    # float32 bytes + the margin + the unpickler's buffers (measured 8.98 MiB for 3.82 MiB)
    ("many.pkl", H.gzip_pickle_many_blocks(256 << 10, 64), PICKLE_MARGIN + (1 << 20)),
])
def test_peak_memory_on_hostile_files_is_bounded_by_the_declared_size(tmp_path, warmups, name,
                                                                     blob, limit_extra):
    p = tmp_path / name
    p.write_bytes(blob)
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(p), json.dumps(MEM_EXPECTED),
                        *warmups], capture_output=True, text=True, timeout=300, check=False,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["outcome"] != "loaded" and "\n" not in res["outcome"]
    growth = res["peak"] - res["base"]
    print(f"{name}: {len(blob)} bytes on disk, peak growth {growth / 2**20:.2f} MiB "
          f"(declared {MEM_DECLARED / 2**20:.2f} MiB): {res['outcome'][-90:]}")
    assert growth < 2 * MEM_DECLARED + limit_extra, (growth, res)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_byte_budget_admits_legitimate_files_of_every_protocol(tmp_path, dtype, protocol):
    """float64 data at protocol 2 (latin-1 text, up to 2 bytes a byte) or 0/1 (escaped text)
    takes more bytes than the values: the budget depends on the protocol."""
    exp = [["fc", "W", [300, 400]], ["fc", "b", [400]]]
    rng = np.random.default_rng(protocol)
    vals = [rng.normal(size=(300, 400)).astype(dtype), rng.normal(size=400).astype(dtype)]
    p = tmp_path / "p.pkl"
    p.write_bytes(pickle.dumps({"param values": vals, "synset words": ["x"] * 1000},
                               protocol=protocol))
    got, extra, _ = load_param_values(str(p), exp)
    np.testing.assert_array_equal(got[0], vals[0])
    assert len(extra["synset words"]) == 1000
