"""Lasagne parameter files: every flavour, the restricted unpickler, count/shape mismatches."""
from __future__ import annotations

import gzip
import os
import pickle
import pickletools

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.lasagne import load_lasagne, load_param_values, safe_pickle
from migrator.testing import lasagne_models as M

SMALL = M.HEADER + '''
def build_model():
    l = InputLayer((None, 2, 5, 5), name='in')
    l = Conv2DLayer(l, 3, 3, name='conv')
    l = batch_norm(DenseLayer(l, 4, name='fc'))
    return DenseLayer(l, 2, nonlinearity=softmax, name='out')
'''
# params in get_all_params order: conv.W conv.b fc.W fc_bn.{beta,gamma,mean,inv_std} out.W out.b
SMALL_SHAPES = [(3, 2, 3, 3), (3,), (27, 4), (4,), (4,), (4,), (4,), (4, 2), (2,)]


def _values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in SMALL_SHAPES]


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    return M.write_script(tmp_path_factory.mktemp("b"), SMALL)


@pytest.mark.parametrize("flavour", M.FLAVOURS)
def test_every_flavour_loads_the_same_arrays_in_order(tmp_path, builder, flavour):
    vals = _values(1)
    p = M.write_params(str(tmp_path / ("p.npz" if flavour == "npz" else "p.pkl")), vals, flavour,
                       labels=["cat", "dog"], mean=[1.0, 2.0, 3.0])
    got, extra, _ = load_param_values(p)
    assert len(got) == len(vals)
    for a, b in zip(got, vals):
        np.testing.assert_array_equal(a, b)
    g = load_lasagne(builder, p)
    order = g.meta["param_order"]
    assert [k for _, k in order] == ["weight", "bias", "weight", "beta", "gamma", "mean",
                                     "inv_std", "weight", "bias"]
    for (node, key), v in zip(order, vals):
        np.testing.assert_array_equal(g.node(node).params[key].value, v)
    if flavour in ("pkl_param_values", "pkl_values", "pkl_py2"):
        assert g.meta["labels"] == ["cat", "dog"]
    if flavour in ("pkl_param_values", "pkl_values"):
        np.testing.assert_allclose(g.meta["mean"], [1.0, 2.0, 3.0])


def test_py2_flavour_is_really_a_python2_style_pickle(tmp_path):
    data = M.py2_pickle_bytes({"param values": [np.arange(3, dtype=np.float32)],
                               "synset words": ["a"]})
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert "SHORT_BINSTRING" in ops and "BINUNICODE" not in ops
    assert b"numpy.core.multiarray" in data and b"_reconstruct" in data
    # the stock unpickler needs latin1 for it, as for real Python 2 pickles
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(M.py2_pickle_bytes([np.array([1e30, -2.5], dtype=np.float32)]))
    out = safe_pickle.loads(data)
    np.testing.assert_array_equal(out["param values"][0], np.arange(3, dtype=np.float32))


def test_npz_arrays_are_taken_in_numeric_order(tmp_path):
    vals = [np.full((i + 1,), i, dtype=np.float32) for i in range(12)]
    p = str(tmp_path / "p.npz")
    with open(p, "wb") as f:
        np.savez(f, *vals)
    got, _, _ = load_param_values(p)
    assert [int(a[0]) for a in got] == list(range(12))     # arr_10 after arr_9, not after arr_1


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _EvilSystem:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("evil", [_Evil, _EvilSystem])
def test_malicious_pickle_is_refused_and_executes_nothing(tmp_path, builder, evil):
    victim = tmp_path / "pwned"
    payload = {"param values": [np.zeros(3, np.float32), evil(str(victim))]}
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(payload, protocol=2))
    # make sure the payload really would create the file with the stock unpickler
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(evil(str(probe))))
    assert probe.exists()
    with pytest.raises(MigratorError) as ei:
        load_lasagne(builder, str(p))
    msg = str(ei.value)
    assert "refusing to load" in msg and str(p) in msg and "\n" not in msg
    assert any(s in msg for s in ("io.open", "builtins.open", "posix.system", "os.system"))
    assert not victim.exists()


def test_gzip_and_protocol_5_pickles(tmp_path):
    vals = _values(2)
    p = tmp_path / "p5.pkl"
    p.write_bytes(pickle.dumps(vals, protocol=5))
    got, _, _ = load_param_values(str(p))
    np.testing.assert_array_equal(got[2], vals[2])
    pz = tmp_path / "p.pkl.gz"
    pz.write_bytes(gzip.compress(pickle.dumps({"values": vals}, protocol=0)))
    got, _, _ = load_param_values(str(pz))
    np.testing.assert_array_equal(got[-1], vals[-1])


def test_count_mismatch_names_the_layer_and_param(tmp_path, builder):
    p = M.write_params(str(tmp_path / "p.pkl"), _values()[:7], "pkl_list")
    with pytest.raises(MigratorError) as ei:
        load_lasagne(builder, p)
    msg = str(ei.value)
    assert "holds 7 parameter arrays" in msg and "has 9 parameters" in msg
    assert "layer 'out'" in msg and "param 'W'" in msg and p in msg


def test_shape_mismatch_names_the_layer_and_param(tmp_path, builder):
    vals = _values()
    vals[4] = np.ones((5,), np.float32)      # fc_bn.gamma
    p = M.write_params(str(tmp_path / "p.npz"), vals, "npz")
    with pytest.raises(MigratorError) as ei:
        load_lasagne(builder, p)
    msg = str(ei.value)
    assert "layer 'fc_bn'" in msg and "'gamma'" in msg and "(5,)" in msg and "(4,)" in msg


@pytest.mark.parametrize("content,needle", [
    (b"", "not a readable pickle"),
    (b"\x80\x02]q\x00(", "not a readable pickle"),
    (pickle.dumps({"weights_of_something": 3}), "without a parameter list"),
    (pickle.dumps("hello"), "holds a str"),
    (pickle.dumps([np.array(["a", "b"])]), "not numeric"),
    (b"PK\x03\x04garbage", "not a readable .npz"),
])
def test_bad_parameter_files(tmp_path, builder, content, needle):
    p = tmp_path / "bad.pkl"
    p.write_bytes(content)
    with pytest.raises(MigratorError) as ei:
        load_lasagne(builder, str(p))
    assert needle in str(ei.value) and str(p) in str(ei.value)


def test_missing_parameter_file(tmp_path, builder):
    with pytest.raises(MigratorError) as ei:
        load_lasagne(builder, str(tmp_path / "nope.pkl"))
    assert "nope.pkl" in str(ei.value)


def test_object_npz_refused(tmp_path, builder):
    p = str(tmp_path / "obj.npz")
    np.savez(p, np.array([{"a": 1}], dtype=object))
    with pytest.raises(MigratorError) as ei:
        load_lasagne(builder, p)
    assert "obj.npz" in str(ei.value)
