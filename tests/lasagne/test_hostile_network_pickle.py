"""Whole-network pickles opened with no builder script: what the allow-list refuses, by name,
before anything named by the file is called; and a network written here opcode for opcode as
Lasagne pickles one (the real Lasagne's pickles are in test_network_pickle.py), checked against
a naive numpy formula.

The pickles are written by :class:`NamedPickler`: objects of stand-in classes are pickled under
the dotted names a real Lasagne/Theano pickle uses (``lasagne.layers.dense.DenseLayer``,
``theano.tensor.sharedvar.TensorSharedVariable``...), without importing anything of that name.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import subprocess
import sys
import types
from typing import ClassVar

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.flow import detect_format, open_model


class NamedPickler(pickle._Pickler):
    """The pure-Python pickler, writing a class or function that has ``_pickle_as`` as that
    global (GLOBAL opcode), unchecked."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)

    def save_global(self, obj, name=None):
        target = getattr(obj, "_pickle_as", None)
        if target is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{target[0]}\n{target[1]}\n".encode())
        self.memoize(obj)


def dumps(obj, protocol=2) -> bytes:
    f = io.BytesIO()
    NamedPickler(f, protocol=protocol).dump(obj)
    return f.getvalue()


def _named(module, name, base=object):
    return type(name, (base,), {"_pickle_as": (module, name)})


InputLayer = _named("lasagne.layers.input", "InputLayer")
DenseLayer = _named("lasagne.layers.dense", "DenseLayer")
Conv2DLayer = _named("lasagne.layers.conv", "Conv2DLayer")
FancyLayer = _named("lasagne.layers.special", "FancyLayer")
Shared = _named("theano.tensor.sharedvar", "TensorSharedVariable")
Container = _named("theano.gof.link", "Container")
TensorVariable = _named("theano.tensor.var", "TensorVariable")
CudaShared = _named("theano.sandbox.cuda.var", "CudaNdarraySharedVariable")
NeuralNet = _named("nolearn.lasagne.base", "NeuralNet")
AdjustVariable = _named("__main__", "AdjustVariable")


class CudaArray:
    """Pickles as Theano's old CUDA array: CudaNdarray_unpickler(numpy array)."""

    def __init__(self, a):
        self.a = a

    def __reduce__(self):
        return (_cuda_unpickler, (self.a,))


def _cuda_unpickler(a):   # never called: the pickle names Theano's function
    raise AssertionError


_cuda_unpickler._pickle_as = ("theano.sandbox.cuda.type", "CudaNdarray_unpickler")


def rectify(x):   # pickled as lasagne.nonlinearities.rectify, never called
    raise AssertionError


rectify._pickle_as = ("lasagne.nonlinearities", "rectify")


def _shared(value, name, cls=Shared, wrap=None):
    s = cls.__new__(cls)
    c = Container.__new__(Container)
    c.__dict__.update(storage=[wrap(value) if wrap else value], name=name, readonly=False)
    s.__dict__.update(container=c, name=name, owner=None, index=None)
    return s


def mlp(rng, *, cls=Shared, wrap=None):
    """Input (None, 5) -> Dense(4, rectify) named 'fc' -> (W, b)."""
    inp = InputLayer.__new__(InputLayer)
    var = TensorVariable.__new__(TensorVariable)
    var.__dict__.update(name="input", owner=None)
    inp.__dict__.update(shape=(None, 5), input_var=var, name=None,
                        params=collections.OrderedDict())
    W = rng.normal(size=(5, 4)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(np.float32)
    fc = DenseLayer.__new__(DenseLayer)
    sw, sb = _shared(W, "fc.W", cls, wrap), _shared(b, "fc.b", cls, wrap)
    fc.__dict__.update(input_shape=(None, 5), input_layer=inp, name="fc", num_units=4,
                       nonlinearity=rectify, W=sw, b=sb,
                       params=collections.OrderedDict([(sw, {"trainable", "regularizable"}),
                                                       (sb, {"trainable"})]))
    return fc, W, b


def _check_mlp(path, W, b):
    from migrator.core.reference import numpy_ref
    g = open_model([str(path)])
    assert [n.op for n in g.nodes] == ["Input", "Dense"]
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    got = numpy_ref.run_all(g, x)["fc"][0]
    want = np.maximum(x.astype(np.float64) @ W + b, 0)       # naive: relu(x W + b)
    assert np.abs(got - want).max() < 1e-5
    return g


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_pickled_network_opens_alone_and_computes_the_naive_formula(tmp_path, protocol):
    fc, W, b = mlp(np.random.default_rng(0))
    p = tmp_path / "net.pkl"
    p.write_bytes(dumps(fc, protocol))
    assert detect_format([str(p)]) == ("lasagne_pickle", {"pickle": str(p)})
    g = _check_mlp(p, W, b)
    assert g.meta["builder"] is None and g.meta["network_pickle"] == str(p)


def test_cuda_shared_variables_read_as_their_numpy_values(tmp_path):
    fc, W, b = mlp(np.random.default_rng(2), cls=CudaShared, wrap=CudaArray)
    p = tmp_path / "gpu_net.pkl"
    p.write_bytes(dumps(fc))
    assert b"CudaNdarray_unpickler" in p.read_bytes()
    _check_mlp(p, W, b)


def test_a_nolearn_wrapper_opens_through_its_layers(tmp_path):
    fc, W, b = mlp(np.random.default_rng(3))
    net = NeuralNet.__new__(NeuralNet)
    net.__dict__.update(layers_=collections.OrderedDict([("input", fc.input_layer), ("fc", fc)]),
                        max_epochs=10)
    p = tmp_path / "nn.pkl"
    p.write_bytes(dumps(net))
    _check_mlp(p, W, b)


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def _refused(path, *needles):
    with pytest.raises(MigratorError) as ei:
        open_model([str(path)])
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_os_system_is_refused_by_name_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "ran"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(_System(marker), protocol=protocol))
    _refused(p, "refusing to load this pickle", f"{os.system.__module__}.system")
    assert not marker.exists()


def test_os_system_inside_a_layer_is_refused_before_it_is_called(tmp_path):
    marker = tmp_path / "ran"
    fc, _, _ = mlp(np.random.default_rng(0))
    fc.__dict__["extra"] = _System(marker)
    p = tmp_path / "evil_layer.pkl"
    p.write_bytes(dumps(fc))
    _refused(p, f"{os.system.__module__}.system")
    assert not marker.exists()


def test_eval_is_refused_by_name(tmp_path):
    p = tmp_path / "eval.pkl"
    p.write_bytes(pickle.dumps(_Eval(), protocol=4))
    _refused(p, "builtins.eval")


def test_an_unknown_layer_class_is_refused_by_name(tmp_path):
    fc, _, _ = mlp(np.random.default_rng(0))
    odd = FancyLayer.__new__(FancyLayer)
    odd.__dict__.update(input_layer=fc, input_shape=(None, 4), params=collections.OrderedDict())
    p = tmp_path / "fancy.pkl"
    p.write_bytes(dumps(odd))
    _refused(p, "lasagne.layers.special.FancyLayer", "Migrator does not know")


def test_a_user_class_in_a_nolearn_net_is_refused_by_name(tmp_path):
    fc, _, _ = mlp(np.random.default_rng(0))
    net = NeuralNet.__new__(NeuralNet)
    cb = AdjustVariable.__new__(AdjustVariable)
    net.__dict__.update(layers_=collections.OrderedDict([("fc", fc)]), on_epoch_finished=[cb])
    p = tmp_path / "nn_cb.pkl"
    p.write_bytes(dumps(net))
    _refused(p, "__main__.AdjustVariable")


def test_a_parameter_file_alone_says_it_needs_its_builder(tmp_path):
    p = tmp_path / "params.pkl"
    p.write_bytes(pickle.dumps([np.zeros((5, 4), np.float32), np.zeros(4, np.float32)]))
    _refused(p, "not a Lasagne network", "builder script")


def test_the_cli_refuses_a_hostile_network_pickle_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(_System(marker), protocol=2))
    r = subprocess.run([sys.executable, "-m", "migrator", "inspect", str(p)], capture_output=True,
                       text=True, timeout=300, cwd=os.getcwd(),
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(p) in lines[0] and "system" in lines[0], r.stderr
    assert not marker.exists()


def test_the_real_theano_runtime_refuses_a_pickle_without_running_it(tmp_path):
    from migrator.core.flow import Flow, FlowOptions
    fc, _, _ = mlp(np.random.default_rng(0))
    p = tmp_path / "net.pkl"
    p.write_bytes(dumps(fc))
    flow = Flow(FlowOptions(paths=[str(p)], runtime="legacy",
                            runtime_settings={"command": sys.executable}))
    with pytest.raises(MigratorError) as ei:
        flow.compare()
    assert "builder script" in str(ei.value) and str(p) in str(ei.value), str(ei.value)


def test_a_cudnn_layer_reads_as_the_recorder_class_of_its_module(tmp_path):
    """lasagne.layers.dnn.Conv2DDNNLayer (not in lasagne.layers' namespace): a cross-correlation
    (flip_filters False), checked against a naive correlation."""
    Conv = _named("lasagne.layers.dnn", "Conv2DDNNLayer")
    rng = np.random.default_rng(5)
    inp = InputLayer.__new__(InputLayer)
    inp.__dict__.update(shape=(None, 2, 5, 4), input_var=None, name="in",
                        params=collections.OrderedDict())
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    sw, sb = _shared(W, "c.W"), _shared(b, "c.b")
    c = Conv.__new__(Conv)
    c.__dict__.update(input_shape=(None, 2, 5, 4), input_layer=inp, name="c", num_filters=3,
                      filter_size=(3, 3), stride=(1, 1), pad=(0, 0), untie_biases=False,
                      flip_filters=False, n=2, num_groups=1, nonlinearity=rectify, W=sw, b=sb,
                      params=collections.OrderedDict([(sw, {"trainable"}), (sb, {"trainable"})]))
    p = tmp_path / "dnn.pkl"
    p.write_bytes(dumps(c))
    from migrator.core.reference import numpy_ref
    g = open_model([str(p)])
    x = rng.normal(size=(1, 2, 5, 4)).astype(np.float32)
    got = numpy_ref.run_all(g, x)["c"][0]
    want = np.zeros((1, 3, 3, 2))
    for o in range(3):
        for i in range(3):
            for j in range(2):
                want[0, o, i, j] = (x[0, :, i:i + 3, j:j + 3] * W[o]).sum() + b[o]
    assert np.abs(got - np.maximum(want, 0)).max() < 1e-5
