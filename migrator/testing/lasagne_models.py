"""Lasagne builder scripts and parameter files for tests, demos and benchmarks.

Each ``*_SCRIPT`` is the text of a builder script as a user would write it (imports of
``lasagne`` / ``theano`` at the top, a ``build_model()`` function).  :func:`write_model`
writes a script next to a parameter file of the chosen flavour, with values made by
:func:`make_param_values` from the shapes the recorder reports (so the file always fits).

Flavours (:data:`FLAVOURS`): ``pkl_list`` (bare list, protocol 2), ``pkl_param_values``
(VGG-style dict ``{'param values', 'synset words', 'mean value'}``), ``pkl_values``
(ResNet-style ``{'values', 'synset_words', 'mean_image'}``), ``pkl_py2`` (a protocol-2
pickle whose arrays are written as Python 2 ``str`` data, loaded with latin1), ``npz``
(``np.savez(f, *values)``), ``pkl_gz`` (gzip-compressed list).
"""
from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from typing import ClassVar

import numpy as np

FLAVOURS = ("pkl_list", "pkl_param_values", "pkl_values", "pkl_py2", "npz", "pkl_gz")

HEADER = """\
import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, DenseLayer, NonlinearityLayer,
                            Pool2DLayer, MaxPool2DLayer, GlobalPoolLayer, ElemwiseSumLayer,
                            ConcatLayer, DropoutLayer, BatchNormLayer, batch_norm, FlattenLayer,
                            ReshapeLayer, DimshuffleLayer, PadLayer, NINLayer, ScaleLayer,
                            BiasLayer, LocalResponseNormalization2DLayer, SliceLayer)
from lasagne.nonlinearities import rectify, softmax, linear, sigmoid, tanh, elu, LeakyRectify
"""

# A small ResNet-style network made with batch_norm() (Lasagne Recipes' style: a dict).
RESNET_SCRIPT = HEADER + '''
def residual_block(net, incoming, name, num_filters, stride):
    net[name + '_conv1'] = batch_norm(Conv2DLayer(incoming, num_filters, 3, stride=stride,
                                                  pad='same', name=name + '_conv1',
                                                  nonlinearity=rectify))
    net[name + '_conv2'] = batch_norm(Conv2DLayer(net[name + '_conv1'], num_filters, 3,
                                                  pad=1, name=name + '_conv2',
                                                  nonlinearity=linear))
    if stride != 1 or incoming.output_shape[1] != num_filters:
        shortcut = batch_norm(Conv2DLayer(incoming, num_filters, 1, stride=stride,
                                          name=name + '_proj', nonlinearity=None))
    else:
        shortcut = incoming
    net[name + '_sum'] = ElemwiseSumLayer([net[name + '_conv2'], shortcut], name=name + '_sum')
    net[name + '_out'] = NonlinearityLayer(net[name + '_sum'], rectify, name=name + '_relu')
    return net[name + '_out']


def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 17, 17), name='input')
    net['conv1'] = batch_norm(Conv2DLayer(net['input'], 8, 3, pad='same', name='conv1'))
    net['pool1'] = MaxPool2DLayer(net['conv1'], 3, stride=2, ignore_border=False, name='pool1')
    x = residual_block(net, net['pool1'], 'res2a', 8, 1)
    x = residual_block(net, x, 'res3a', 16, 2)
    net['pool5'] = GlobalPoolLayer(x, name='pool5')
    net['fc'] = DenseLayer(net['pool5'], 10, nonlinearity=None, name='fc')
    net['prob'] = NonlinearityLayer(net['fc'], softmax, name='prob')
    return net
'''

# Every conv pad mode, flip_filters both ways, pooling modes, a dense right after a conv,
# BN over a dense output, BN without beta/gamma, LRN, NIN, odd sizes with ignore_border=False.
COVERAGE_SCRIPT = HEADER + '''
from lasagne.layers.dnn import Conv2DDNNLayer


def build_model():
    l = InputLayer((None, 3, 13, 11))
    c1 = Conv2DLayer(l, 6, (3, 5), pad='same', flip_filters=True, name='c_same_flip',
                     nonlinearity=LeakyRectify(0.1))
    c2 = Conv2DLayer(c1, 5, 3, pad='full', flip_filters=False, name='c_full_noflip',
                     nonlinearity=None)
    c3 = Conv2DLayer(c2, 7, (2, 3), pad='valid', stride=(2, 1), name='c_valid_s2',
                     nonlinearity=elu)
    c4 = Conv2DDNNLayer(c3, 6, 3, pad=(1, 2), name='c_dnn_pad12', nonlinearity=tanh)
    p1 = Pool2DLayer(c4, 3, stride=2, ignore_border=False, mode='max', name='p_max_ceil')
    p2 = Pool2DLayer(c4, 3, stride=2, pad=(1, 1), ignore_border=True,
                     mode='average_inc_pad', name='p_avg_inc')
    p3 = Pool2DLayer(c4, (2, 3), stride=(1, 2), pad=(1, 1), ignore_border=True,
                     mode='average_exc_pad', name='p_avg_exc')
    p4 = MaxPool2DLayer(c4, 3, stride=2, pad=1, name='p_max_pad')
    lrn = LocalResponseNormalization2DLayer(c4, alpha=1e-2, k=2, beta=0.75, n=3, name='lrn')
    nin = NINLayer(lrn, 4, name='nin', nonlinearity=sigmoid)
    bn_nb = BatchNormLayer(nin, beta=None, name='bn_nobeta')
    bn_ng = BatchNormLayer(bn_nb, gamma=None, name='bn_nogamma')
    d1 = DenseLayer(p1, 12, name='dense_after_conv')
    d1bn = batch_norm(DenseLayer(d1, 9, nonlinearity=rectify, name='dense2'))
    d2 = DenseLayer(p2, 9, nonlinearity=None, name='dense_p2')
    d3 = DenseLayer(p3, 9, nonlinearity=None, name='dense_p3')
    d4 = DenseLayer(p4, 9, nonlinearity=None, name='dense_p4')
    d5 = DenseLayer(bn_ng, 9, nonlinearity=None, name='dense_bn')
    d6 = DenseLayer(c4, 9, nonlinearity=None, name='dense_on_conv')
    s = ElemwiseSumLayer([d1bn, d2, d3, d4, d5, d6], coeffs=[1.0, 0.5, -1.0, 1.0, 2.0, 1.0],
                         name='sum')
    return NonlinearityLayer(s, softmax, name='prob')
'''

# The preliminary (2015 gist) batch normalisation, defined in the script as users did.
GIST_SCRIPT = HEADER + '''
class BatchNormLayer(lasagne.layers.Layer):
    """The preliminary batch normalisation layer (user code)."""

    def __init__(self, incoming, axes=None, epsilon=0.01, alpha=0.5, nonlinearity=None,
                 **kwargs):
        super(BatchNormLayer, self).__init__(incoming, **kwargs)
        self.axes = axes
        if self.axes is None:
            self.axes = (0,) + tuple(range(2, len(self.input_shape)))
        self.epsilon = epsilon
        self.alpha = alpha
        if nonlinearity is None:
            nonlinearity = lasagne.nonlinearities.identity
        self.nonlinearity = nonlinearity
        shape = list(self.input_shape)
        for axis in self.axes:
            shape[axis] = 1
        dtype = theano.config.floatX
        self.mean = self.add_param(lasagne.init.Constant(0), shape, 'mean', trainable=False,
                                   regularizable=False)
        self.std = self.add_param(lasagne.init.Constant(1), shape, 'std', trainable=False,
                                  regularizable=False)
        self.beta = self.add_param(lasagne.init.Constant(0), shape, 'beta', trainable=True,
                                   regularizable=True)
        self.gamma = self.add_param(lasagne.init.Constant(1), shape, 'gamma', trainable=True,
                                    regularizable=False)

    def get_output_for(self, input, deterministic=False, **kwargs):
        mean, std = self.mean, self.std
        std = std + self.epsilon
        normalized = (input - mean) * (self.gamma / std) + self.beta
        return self.nonlinearity(normalized)


def batch_norm(layer):
    nonlinearity = getattr(layer, 'nonlinearity', None)
    if nonlinearity is not None:
        layer.nonlinearity = lasagne.nonlinearities.identity
    if hasattr(layer, 'b'):
        del layer.params[layer.b]
        layer.b = None
    return BatchNormLayer(layer, nonlinearity=nonlinearity)


def build_model():
    l = InputLayer((None, 3, 9, 9))
    l = batch_norm(Conv2DLayer(l, 6, 3, pad=1, name='conv1'))
    l = MaxPool2DLayer(l, 2)
    l = batch_norm(DenseLayer(l, 10, name='fc1'))
    l = DenseLayer(l, 5, nonlinearity=softmax, name='out')
    return l
'''

# A custom layer Migrator does not know (kept as Custom), plus shape-only layers.
CUSTOM_SCRIPT = HEADER + '''
class MyScale(lasagne.layers.Layer):
    def __init__(self, incoming, factor=2.0, **kwargs):
        super(MyScale, self).__init__(incoming, **kwargs)
        self.factor = factor
        self.w = self.add_param(lasagne.init.Constant(1.0), (self.input_shape[1],), name='w')

    def get_output_for(self, input, **kwargs):
        return input * self.factor * self.w.dimshuffle('x', 0, 'x', 'x')


def build_model():
    l = InputLayer((None, 2, 6, 6), name='in')
    l = Conv2DLayer(l, 4, 3, pad=1, name='conv')
    l = MyScale(l, factor=3.0, name='myscale')
    l = PadLayer(l, 1, name='pad')
    l = DimshuffleLayer(l, (0, 1, 3, 2), name='shuffle')
    l = ReshapeLayer(l, ([0], -1), name='reshape')
    l = DenseLayer(l, 3, name='fc')
    return l
'''


# Shape/merge/affine layers: Scale, Bias, PReLU, Concat, Slice, Pad, Dimshuffle, Reshape,
# Flatten, ElemwiseMerge (max), Dropout, a layer named in a dict, softplus/ScaledTanH.
MISC_SCRIPT = HEADER + '''
from lasagne.layers import ElemwiseMergeLayer, ParametricRectifierLayer, prelu


def build_model():
    net = {}
    net['in'] = InputLayer((None, 4, 7, 6))
    a = Conv2DLayer(net['in'], 6, 3, pad=1, nonlinearity=lasagne.nonlinearities.softplus,
                    name='conv_a')
    b = Conv2DLayer(net['in'], 6, 1, nonlinearity=lasagne.nonlinearities.ScaledTanH(0.5, 2.0),
                    name='conv_b')
    net['scale'] = ScaleLayer(a)
    net['bias'] = BiasLayer(net['scale'])
    p = prelu(Conv2DLayer(b, 6, 3, pad=1, name='conv_p'))
    m = ElemwiseMergeLayer([net['bias'], p], T.maximum, name='max')
    c = ConcatLayer([m, b], axis=1, name='cat')
    s = SliceLayer(c, slice(2, 9), axis=1, name='slice')
    d = DropoutLayer(s, p=0.3, name='drop')
    pd = PadLayer(d, [(1, 0), 2], name='pad')
    sh = DimshuffleLayer(pd, (0, 1, 3, 2), name='shuffle')
    r = ReshapeLayer(sh, ([0], [1], -1), name='reshape')
    f = FlattenLayer(r, name='flat')
    net['out'] = DenseLayer(f, 5, nonlinearity=sigmoid, name='out')
    return net
'''


def write_script(directory, text: str, name: str = "builder.py") -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def param_shapes(builder_path: str, **kw) -> list[tuple[int, ...]]:
    """The parameter shapes in get_all_params order, as recorded (runs the child)."""
    from migrator.core.importers.lasagne import describe_builder
    desc = describe_builder(builder_path, **kw)
    return [tuple(s) for _, _, s in desc["params"]]


def make_param_values(builder_path: str, seed: int = 0,
                      fill: Callable | None = None, **kw) -> list[np.ndarray]:
    """Random float32 values fitting the builder's parameters.  BN-like names get sensible
    values (``inv_std``/``std``/``gamma`` positive)."""
    from migrator.core.importers.lasagne import describe_builder
    desc = describe_builder(builder_path, **kw)
    rng = np.random.default_rng(seed)
    out = []
    for lay, pname, shape in desc["params"]:
        shape = tuple(shape)
        if fill is not None:
            v = fill(lay, pname, shape, rng)
            if v is not None:
                out.append(np.asarray(v, dtype=np.float32))
                continue
        if pname in ("inv_std",):
            v = rng.uniform(0.5, 2.0, shape)
        elif pname in ("std",):
            v = rng.uniform(0.3, 1.5, shape)
        elif pname in ("gamma",):
            v = rng.uniform(0.5, 1.5, shape)
        elif pname in ("W",):
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            v = rng.normal(0, 1.0 / np.sqrt(max(fan_in, 1)), shape)
        else:
            v = rng.normal(0, 0.3, shape)
        out.append(v.astype(np.float32))
    return out


class _Py2Str(bytes):
    """bytes that pickle as a Python 2 ``str`` (SHORT_BINSTRING / BINSTRING opcodes)."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us add a dispatch entry
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2str


def _py2_array(a: np.ndarray):
    """An object whose pickle is what Python 2 numpy wrote for ``a``."""

    class _DType:
        def __reduce__(self):
            dt = a.dtype
            order = "|" if dt.itemsize == 1 else ("<" if dt.byteorder in "=<" else ">")
            return (np.dtype, (_Py2Str(f"{dt.kind}{dt.itemsize}".encode()), 0, 1),
                    (3, _Py2Str(order.encode()), None, None, None, -1, -1, 0))

    class _Arr:
        def __reduce__(self):
            state = (1, a.shape, _DType(), False, _Py2Str(np.ascontiguousarray(a).tobytes()))
            return (_reconstruct_ref, (np.ndarray, (0,), _Py2Str(b"b")), state)
    return _Arr()


def _reconstruct_ref(*a):  # placeholder; replaced by the real global name when pickling
    raise AssertionError


def py2_pickle_bytes(obj) -> bytes:
    """Pickle ``obj`` (lists/dicts of arrays, str, float) the way Python 2 + numpy 1 did:
    protocol 2, arrays via ``numpy.core.multiarray._reconstruct`` with ``str`` data,
    text as Python 2 ``str`` (bytes)."""
    import io

    def conv(x):
        if isinstance(x, np.ndarray):
            return _py2_array(x)
        if isinstance(x, str):
            return _Py2Str(x.encode("latin1"))
        if isinstance(x, list):
            return [conv(v) for v in x]
        if isinstance(x, tuple):
            return tuple(conv(v) for v in x)
        if isinstance(x, dict):
            return {conv(k): conv(v) for k, v in x.items()}
        return x

    buf = io.BytesIO()
    p = _Py2Pickler(buf, protocol=2)
    # make the reconstruct function pickle under numpy 1's global name
    _reconstruct_ref.__module__ = "numpy.core.multiarray"
    _reconstruct_ref.__qualname__ = "_reconstruct"
    _reconstruct_ref.__name__ = "_reconstruct"
    import sys
    import types
    shim = sys.modules.get("numpy.core.multiarray")
    saved = getattr(shim, "_reconstruct", None) if shim is not None else None
    fake = types.ModuleType("numpy.core.multiarray")
    fake._reconstruct = _reconstruct_ref
    sys.modules["numpy.core.multiarray"] = fake
    try:
        p.dump(conv(obj))
    finally:
        if shim is not None:
            sys.modules["numpy.core.multiarray"] = shim
        else:
            del sys.modules["numpy.core.multiarray"]
        del saved
    return buf.getvalue()


def write_params(path: str, values: list[np.ndarray], flavour: str, *,
                 labels: list[str] | None = None, mean=None) -> str:
    """Write ``values`` as a Lasagne parameter file of ``flavour`` (see :data:`FLAVOURS`)."""
    values = [np.asarray(v) for v in values]
    labels = labels if labels is not None else [f"n{i:08d} class {i}" for i in range(3)]
    if flavour == "npz":
        with open(path, "wb") as f:
            np.savez(f, *values)
        return path
    if flavour == "pkl_list":
        data = pickle.dumps(values, protocol=2)
    elif flavour == "pkl_param_values":
        data = pickle.dumps({"param values": values, "synset words": labels,
                             "mean value": np.asarray(mean if mean is not None
                                                      else [103.939, 116.779, 123.68],
                                                      dtype=np.float32)}, protocol=2)
    elif flavour == "pkl_values":
        data = pickle.dumps({"values": values, "synset_words": labels,
                             "mean_image": np.asarray(mean if mean is not None
                                                      else np.full((3, 4, 4), 110.0),
                                                      dtype=np.float32)}, protocol=4)
    elif flavour == "pkl_py2":
        data = py2_pickle_bytes({"param values": values, "synset words": labels})
    elif flavour == "pkl_gz":
        data = gzip.compress(pickle.dumps(values, protocol=4))
    else:
        raise ValueError(f"unknown flavour {flavour!r}")
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_model(directory, script: str, flavour: str = "pkl_list", seed: int = 0,
                fill: Callable | None = None) -> tuple[str, str, list[np.ndarray]]:
    """Write ``builder.py`` and a parameter file -> (builder path, params path, values)."""
    b = write_script(directory, script)
    values = make_param_values(b, seed=seed, fill=fill)
    ext = ".npz" if flavour == "npz" else ".pkl"
    p = write_params(os.path.join(str(directory), "params" + ext), values, flavour)
    return b, p, values


# ======================================================================================
# Real-Theano evaluation of a recorded network (run with the Theano venv's python)
# ======================================================================================
#: Run by ``tests.envs.theano_env.run_theano``: ``IN`` holds ``desc`` (the child's JSON
#: description as a 0-d string array), ``param__<i>`` (get_all_params order),
#: ``input__<name>`` (network inputs) and ``iso__<layer>__<k>`` (the k-th input of a layer
#: for the isolated run); several networks at once when every key starts with ``<tag>::``
#: (one Theano process, outputs prefixed the same way).  It builds every layer from the *Lasagne-level* description with
#: the Theano ops Lasagne 0.2 uses (conv2d with filter_flip and border modes, pool_2d,
#: the BN / LRN formulas, nonlinearities) and fills ``OUT['chain__<layer>']`` (the whole
#: network, Theano feeding itself) and ``OUT['iso__<layer>']`` (each layer on the given
#: inputs).  Custom layers other than the gist BN are skipped.
THEANO_LAYERS_SCRIPT = r'''
import json
import theano
import theano.tensor as T
from theano.tensor.signal.pool import pool_2d
import theano.tensor.extra_ops
import theano.tensor.nnet.abstract_conv

P = {}
TAG = [""]
def param(i):
    key = TAG[0] + "param__%d" % i
    if key not in P:
        P[key] = theano.shared(IN[key], name="p%d" % i)
    return P[key]

def fname(d):
    if not isinstance(d, dict):
        return None
    n = str(d.get("__callable__", "")).replace("()", "")
    return n.rsplit(".", 1)[-1]

def nonlin(d, x):
    if d is None:
        return x
    cls = d.get("class")
    if cls == "LeakyRectify":
        return T.nnet.relu(x, d["leakiness"])
    if cls in ("ScaledTanH", "ScaledTanh"):
        return d["scale_out"] * T.tanh(d["scale_in"] * x)
    n = fname(d)
    if n in ("rectify", "relu"):
        return T.nnet.relu(x)
    if n == "leaky_rectify":
        return T.nnet.relu(x, 0.01)
    if n == "very_leaky_rectify":
        return T.nnet.relu(x, 1.0 / 3)
    if n == "elu":
        return T.switch(x > 0, x, T.exp(x) - 1)
    if n == "sigmoid":
        return T.nnet.sigmoid(x)
    if n == "tanh":
        return T.tanh(x)
    if n == "softmax":
        return T.nnet.softmax(x)
    if n == "softplus":
        return T.nnet.softplus(x)
    if n in ("linear", "identity"):
        return x
    raise ValueError("nonlinearity %r" % (n,))

FLIP = {"Conv2DLayer": True, "Conv2DDNNLayer": False, "Conv2DMMLayer": False, "Conv2DCCLayer": False}

def pattern_for(ndim, axes):
    it = iter(range(ndim - len(axes)))
    return ["x" if a in axes else next(it) for a in range(ndim)]

def layer_expr(L, xs):
    k, a = L["known"], L["attrs"]
    ps = {p["name"]: param(p["index"]) for p in L["params"]}
    x = xs[0] if xs else None
    if k is None or L["custom_output"]:
        if "BatchNorm" in L["class"] and set(ps) == {"mean", "std", "beta", "gamma"}:
            axes = tuple(a.get("axes") or [0] + list(range(2, x.ndim)))
            mean, std, beta, gamma = [T.addbroadcast(ps[n], *axes) for n in ("mean", "std", "beta", "gamma")]
            std = std + a.get("epsilon", 0.01)
            return nonlin(a.get("nonlinearity"), (x - mean) * (gamma / std) + beta)
        return None
    if k == "TransposedConv2DLayer":
        # Lasagne 0.2 TransposedConv2DLayer.convolve: the gradient of a Conv2D wrt its inputs
        crop = a["crop"]
        border = "half" if crop == "same" else ("full" if crop == "full" else tuple(crop))
        oshape = tuple(L["output_shape"])
        op = T.nnet.abstract_conv.AbstractConv2d_gradInputs(
            imshp=oshape, kshp=tuple(IN[TAG[0] + "param__%d" % L["params"][0]["index"]].shape),
            subsample=tuple(a["stride"]), border_mode=border,
            filter_flip=not a.get("flip_filters", False))
        y = op(ps["W"], x, oshape[2:])
        if "b" in ps:
            y = y + (ps["b"].dimshuffle("x", 0, 1, 2) if a.get("untie_biases")
                     else ps["b"].dimshuffle("x", 0, "x", "x"))
        return nonlin(a.get("nonlinearity"), y)
    if k == "DilatedConv2DLayer":
        # Lasagne 0.2 DilatedConv2DLayer.convolve: the gradient of a conv wrt its weights,
        # batch and channels swapped, the dilation as the subsampling
        oshp = tuple(L["output_shape"])
        op = T.nnet.abstract_conv.AbstractConv2d_gradWeights(
            imshp=None, kshp=(oshp[1], oshp[0]) + oshp[2:], subsample=tuple(a["dilation"]),
            border_mode="valid", filter_flip=False)
        y = op(x.transpose(1, 0, 2, 3), ps["W"], oshp[2:]).transpose(1, 0, 2, 3)
        if "b" in ps:
            y = y + (ps["b"].dimshuffle("x", 0, 1, 2) if a.get("untie_biases")
                     else ps["b"].dimshuffle("x", 0, "x", "x"))
        return nonlin(a.get("nonlinearity"), y)
    if k == "Upscale2DLayer":
        sa, sb = a["scale_factor"]
        if a["mode"] == "repeat":
            y = x
            if sb > 1:
                y = T.extra_ops.repeat(y, sb, 3)
            if sa > 1:
                y = T.extra_ops.repeat(y, sa, 2)
            return y
        z = T.zeros((x.shape[0], x.shape[1], x.shape[2] * sa, x.shape[3] * sb), dtype=x.dtype)
        return T.set_subtensor(z[:, :, ::sa, ::sb], x)
    if k in FLIP:
        pad = a["pad"]
        border = "half" if pad == "same" else ("full" if pad == "full" else tuple(pad))
        y = T.nnet.conv2d(x, ps["W"], subsample=tuple(a["stride"]), border_mode=border,
                          filter_flip=a.get("flip_filters", FLIP[k]))
        if "b" in ps:
            y = y + (ps["b"].dimshuffle("x", 0, 1, 2) if a.get("untie_biases")
                     else ps["b"].dimshuffle("x", 0, "x", "x"))
        return nonlin(a.get("nonlinearity"), y)
    if k == "DenseLayer":
        nla = a.get("num_leading_axes", 1)
        if x.ndim > nla + 1:
            x = x.flatten(nla + 1)
        y = T.dot(x, ps["W"])
        if "b" in ps:
            y = y + ps["b"]
        return nonlin(a.get("nonlinearity"), y)
    if k == "NINLayer":
        y = T.tensordot(x, ps["W"], axes=[[1], [0]])
        y = y.dimshuffle(0, x.ndim - 1, *range(1, x.ndim - 1))
        if "b" in ps:
            y = y + (ps["b"].dimshuffle("x", 0, 1, 2) if a.get("untie_biases")
                     else ps["b"].dimshuffle("x", 0, "x", "x"))
        return nonlin(a.get("nonlinearity"), y)
    if k in ("BatchNormLayer", "BatchNormDNNLayer"):
        axes = tuple(a["axes"])
        pat = pattern_for(x.ndim, axes)
        beta = ps["beta"].dimshuffle(pat) if "beta" in ps else 0
        gamma = ps["gamma"].dimshuffle(pat) if "gamma" in ps else 1
        mean, inv_std = ps["mean"].dimshuffle(pat), ps["inv_std"].dimshuffle(pat)
        return (x - mean) * (gamma * inv_std) + beta
    if k == "NonlinearityLayer":
        return nonlin(a.get("nonlinearity"), x)
    if k in ("Pool2DLayer", "MaxPool2DLayer", "Pool2DDNNLayer", "MaxPool2DDNNLayer"):
        stride = a["stride"] if a.get("stride") is not None else a["pool_size"]
        return pool_2d(x, ws=tuple(a["pool_size"]), stride=tuple(stride),
                       ignore_border=a["ignore_border"], pad=tuple(a["pad"]), mode=a["mode"])
    if k == "GlobalPoolLayer":
        f = {"mean": T.mean, "max": T.max}[fname(a["pool_function"])]
        return f(x.flatten(3), axis=2)
    if k == "ElemwiseSumLayer":
        y = 0
        for c, xi in zip(a["coeffs"], xs):
            y = y + (xi if c == 1 else c * xi)
        return y
    if k == "ElemwiseMergeLayer":
        f = {"maximum": T.maximum, "mul": T.mul, "add": T.add}[fname(a["merge_function"])]
        y = xs[0]
        for xi in xs[1:]:
            y = f(y, xi)
        return y
    if k == "ConcatLayer":
        return T.concatenate(xs, axis=a["axis"])
    if k in ("DropoutLayer", "GaussianNoiseLayer"):
        return x
    if k == "FlattenLayer":
        return x.flatten(a["outdim"])
    if k == "ReshapeLayer":
        shp = [x.shape[s[0]] if isinstance(s, list) else s for s in a["shape"]]
        return T.reshape(x, shp, ndim=len(shp))
    if k == "DimshuffleLayer":
        return x.dimshuffle(*a["pattern"])
    if k == "PadLayer":
        w, bnd = a["width"], a["batch_ndim"]
        widths = [w] * (x.ndim - bnd) if isinstance(w, int) else w
        widths = [(v, v) if isinstance(v, int) else tuple(v) for v in widths]
        shp = [x.shape[i] for i in range(bnd)]
        idx = [slice(None)] * bnd
        for i, (l, r) in enumerate(widths):
            shp.append(x.shape[bnd + i] + l + r)
            idx.append(slice(l, l + x.shape[bnd + i]))
        out = T.zeros(shp, dtype=x.dtype) + a.get("val", 0)
        return T.set_subtensor(out[tuple(idx)], x)
    if k == "LocalResponseNormalization2DLayer":
        n, alpha, kk, beta = a["n"], a["alpha"], a["k"], a["beta"]
        half = n // 2
        sq = T.sqr(x)
        b_, ch, r, c = x.shape
        ext = T.alloc(0., b_, ch + 2 * half, r, c)
        sq = T.set_subtensor(ext[:, half:half + ch, :, :], sq)
        scale = kk
        for i in range(n):
            scale = scale + alpha * sq[:, i:i + ch, :, :]
        return x / scale ** beta
    if k in ("ScaleLayer", "BiasLayer", "ParametricRectifierLayer"):
        pat = pattern_for(x.ndim, tuple(a["shared_axes"]))
        if k == "ScaleLayer":
            return x * ps["scales"].dimshuffle(pat)
        if k == "BiasLayer":
            return x + ps["b"].dimshuffle(pat) if "b" in ps else x
        return T.nnet.relu(x, ps["alpha"].dimshuffle(pat))
    if k == "SliceLayer":
        s = a["slice"]["__slice__"]
        ax = a["axis"] % x.ndim
        return x[(slice(None),) * ax + (slice(*s),)]
    return None

def run_model(tag):
    TAG[0] = tag
    desc = json.loads(str(IN[tag + "desc"]))
    chain, iso_in, iso_out = {}, [], {}
    chain_inputs = []
    for L in desc["layers"]:
        nm = L["name"]
        if L["known"] == "InputLayer":
            v = T.TensorType("float32", (False,) * len(L["output_shape"]))(tag + "input__" + nm)
            chain_inputs.append(v)
            chain[nm] = v
            continue
        xs_chain = [chain.get(i) for i in L["inputs"]]
        xs_iso = []
        for j, i in enumerate(L["inputs"]):
            key = tag + "iso__%s__%d" % (nm, j)
            if key in IN:
                v = T.TensorType("float32", (False,) * IN[key].ndim)(key)
                iso_in.append(v)
                xs_iso.append(v)
            else:
                xs_iso.append(None)
        e = layer_expr(L, xs_chain) if all(v is not None for v in xs_chain) else None
        if e is not None:
            chain[nm] = e
        if xs_iso and all(v is not None for v in xs_iso):
            ei = layer_expr(L, xs_iso)
            if ei is not None:
                iso_out[nm] = ei
    names_c = [n for n in chain if all(chain[n] is not v for v in chain_inputs)]
    names_i = list(iso_out)
    ins = chain_inputs + iso_in
    outs = [chain[n] for n in names_c] + [iso_out[n] for n in names_i]
    f = theano.function(ins, outs, on_unused_input="ignore")
    vals = f(*[IN[v.name] for v in ins])
    for n, v in zip(names_c, vals[:len(names_c)]):
        OUT[tag + "chain__" + n] = v
    for n, v in zip(names_i, vals[len(names_c):]):
        OUT[tag + "iso__" + n] = v


for _tag in sorted(set(k[:-len("desc")] for k in IN if k.endswith("desc"))):
    run_model(_tag)
'''


def theano_request(graph, x: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                   tag: str = "") -> dict[str, np.ndarray]:
    """The ``IN`` arrays for :data:`THEANO_LAYERS_SCRIPT`: the graph's Lasagne description,
    its parameters in get_all_params order, the network inputs ``x`` (by input layer
    name) and each layer's inputs taken from ``ref`` (node name -> reference output)."""
    import json

    desc = graph.meta["lasagne_description"]
    t = f"{tag}::" if tag else ""
    arrays: dict[str, np.ndarray] = {t + "desc": np.array(json.dumps(desc))}
    values = _values_in_lasagne_order(graph)
    for i, v in enumerate(values):
        arrays[f"{t}param__{i}"] = np.asarray(v, dtype=np.float32)
    for L in desc["layers"]:
        if L["known"] == "InputLayer":
            arrays[t + "input__" + L["name"]] = np.asarray(x[L["name"]], dtype=np.float32)
            continue
        for j, i in enumerate(L["inputs"]):
            if i in ref:
                arrays[f"{t}iso__{L['name']}__{j}"] = np.asarray(ref[i], dtype=np.float32)
    return arrays


def _values_in_lasagne_order(graph) -> list[np.ndarray]:
    """The parameter arrays exactly as the file held them (get_all_params order)."""
    vals = graph.meta.get("lasagne_param_values")
    if vals is not None:
        return list(vals)
    raise KeyError("graph.meta['lasagne_param_values'] missing")


# ======================================================================================
# The rest of the Lasagne layer catalogue: builder scripts and the Theano expressions of the
# classes THEANO_LAYERS_SCRIPT does not know, written from Lasagne master's definitions
# ======================================================================================
#: Classes Lasagne 0.1 (PyPI) has: run by the real Lasagne in the tests.
CATALOGUE_01_SCRIPT = '''
import theano.tensor as T
from lasagne.layers import (InputLayer, Conv2DLayer, NINLayer, FeaturePoolLayer,
                            FeatureWTALayer, GlobalPoolLayer, ElemwiseMergeLayer, SliceLayer,
                            GaussianNoiseLayer, FlattenLayer, ReshapeLayer, ConcatLayer,
                            DenseLayer, NonlinearityLayer)
from lasagne.nonlinearities import softmax, tanh


def build_model():
    net = {}
    net['input'] = InputLayer((None, 4, 9, 8))
    net['conv'] = Conv2DLayer(net['input'], 12, 3, pad=1, nonlinearity=tanh)
    net['noise'] = GaussianNoiseLayer(net['conv'], 0.3)
    net['fp_max'] = FeaturePoolLayer(net['noise'], 3)
    net['fp_mean'] = FeaturePoolLayer(net['conv'], 3, pool_function=T.mean)
    net['fp_sum_h'] = FeaturePoolLayer(net['conv'], 3, axis=2, pool_function=T.sum)
    net['fp_min_w'] = FeaturePoolLayer(net['conv'], 4, axis=3, pool_function=T.min)
    net['wta'] = FeatureWTALayer(net['conv'], 4)
    net['wta_w'] = FeatureWTALayer(net['conv'], 2, axis=3)
    net['nin'] = NINLayer(net['wta'], 5, untie_biases=True)
    net['m_min'] = ElemwiseMergeLayer([net['fp_max'], net['fp_mean']], T.minimum)
    net['m_sub'] = ElemwiseMergeLayer([net['fp_max'], net['fp_mean']], T.sub)
    net['m_mul'] = ElemwiseMergeLayer([net['m_min'], net['m_sub'], net['fp_mean']], T.mul)
    net['m_max'] = ElemwiseMergeLayer([net['m_mul'], net['fp_max']], T.maximum)
    net['gp_sum'] = GlobalPoolLayer(net['conv'], T.sum)
    net['gp_min'] = GlobalPoolLayer(net['wta_w'], T.min)
    net['gp_var'] = GlobalPoolLayer(net['m_max'], T.var)
    net['gp_std'] = GlobalPoolLayer(net['nin'], T.std)
    net['sl_h'] = SliceLayer(net['conv'], slice(1, 3), axis=2)
    net['sl_hw'] = SliceLayer(net['sl_h'], slice(None, None, 4), axis=-1)
    net['gp_prod'] = GlobalPoolLayer(net['sl_hw'], T.prod)
    net['sl_idx'] = SliceLayer(net['fp_sum_h'], 1, axis=1)
    net['resh3'] = ReshapeLayer(net['fp_min_w'], ([0], [1], -1))
    net['gp3_max'] = GlobalPoolLayer(net['resh3'], T.max)
    net['gp3_mean'] = GlobalPoolLayer(net['resh3'])
    net['flat3'] = FlattenLayer(net['sl_idx'], outdim=2)
    net['cat'] = ConcatLayer([net['gp_sum'], net['gp_min'], net['gp_var'], net['gp_std'],
                              net['gp_prod'], net['gp3_max'], net['gp3_mean'], net['flat3']])
    net['fc'] = DenseLayer(net['cat'], 6, nonlinearity=None)
    net['prob'] = NonlinearityLayer(net['fc'], softmax)
    return net
'''

#: Classes of Lasagne master only (cuDNN / corrMM / cuda-convnet variants, num_leading_axes,
#: cropping, RReLU, StandardizationLayer, ...): compared with Theano's own ops.
CATALOGUE_MASTER_SCRIPT = '''
import theano.tensor as T
from lasagne.layers import (InputLayer, DenseLayer, ScaleLayer, BiasLayer, ConcatLayer,
                            ElemwiseSumLayer, ElemwiseMergeLayer, ParametricRectifierLayer,
                            RandomizedRectifierLayer, StandardizationLayer, GaussianNoiseLayer,
                            DropoutLayer, instance_norm, layer_norm, FlattenLayer, ReshapeLayer,
                            GlobalPoolLayer, NINLayer, SpatialPyramidPoolingLayer,
                            LocallyConnected2DLayer, BatchNormLayer, batch_norm,
                            Upscale1DLayer)
from lasagne.layers.dnn import (Conv2DDNNLayer, MaxPool2DDNNLayer, Pool2DDNNLayer,
                                SpatialPyramidPoolingDNNLayer, batch_norm_dnn)
from lasagne.layers.corrmm import Conv2DMMLayer
from lasagne.layers.cuda_convnet import Conv2DCCLayer, MaxPool2DCCLayer
from lasagne.nonlinearities import tanh, rectify


def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 11, 10))
    net['dnn'] = Conv2DDNNLayer(net['input'], 6, (3, 2), pad=1, nonlinearity=tanh)
    net['mm'] = Conv2DMMLayer(net['input'], 6, 3, pad='same', nonlinearity=tanh)
    net['cc'] = Conv2DCCLayer(net['input'], 6, 3, pad=2, stride=2, untie_biases=True,
                              nonlinearity=tanh)
    net['mm_flip'] = Conv2DMMLayer(net['input'], 6, 3, pad='full', flip_filters=True,
                                   nonlinearity=None)
    net['dnn_max'] = MaxPool2DDNNLayer(net['mm'], 3, stride=2, pad=1)
    net['dnn_avg'] = Pool2DDNNLayer(net['mm'], (3, 2), stride=(2, 1), pad=(1, 1),
                                    mode='average_exc_pad')
    net['cc_max'] = MaxPool2DCCLayer(net['mm'], 3, stride=2)
    net['scale'] = ScaleLayer(net['dnn'])
    net['bias'] = BiasLayer(net['scale'])
    net['prelu'] = ParametricRectifierLayer(net['bias'])
    net['prelu_all'] = ParametricRectifierLayer(net['mm_flip'], shared_axes='all')
    net['rrelu'] = RandomizedRectifierLayer(net['mm_flip'], lower=0.2, upper=0.5)
    net['std_sp'] = StandardizationLayer(net['rrelu'])
    net['std_ft'] = StandardizationLayer(net['prelu_all'], axes='features', epsilon=1e-3)
    net['std_c'] = StandardizationLayer(net['cc'], axes=1)
    net['inorm'] = instance_norm(Conv2DDNNLayer(net['prelu'], 4, 3, pad=1, name='in_conv'))
    net['lnorm'] = layer_norm(DenseLayer(net['std_c'], 7, name='ln_dense'))
    net['noise'] = GaussianNoiseLayer(net['std_sp'])
    net['drop'] = DropoutLayer(net['noise'], p=0.3)
    net['cat_crop'] = ConcatLayer([net['drop'], net['prelu'], net['dnn_max']],
                                  cropping=[None, None, 'center', 'lower'])
    net['sum_crop'] = ElemwiseSumLayer([net['mm'], net['dnn_avg'], net['prelu']],
                                       coeffs=[0.5, -1.0, 2.0],
                                       cropping=[None, None, 'upper', 'center'])
    net['mul_crop'] = ElemwiseMergeLayer([net['cc_max'], net['dnn_max']], T.mul,
                                         cropping=[None, None, 'lower', 'upper'])
    net['cat_w'] = ConcatLayer([net['inorm'], net['std_ft']], axis=-1,
                               cropping=[None, 'center', 'lower', None])
    net['dense_nla'] = DenseLayer(ReshapeLayer(net['sum_crop'], ([0], [1], -1)), 5,
                                  num_leading_axes=2, nonlinearity=tanh)
    net['dense_neg'] = DenseLayer(net['cat_crop'], 3, num_leading_axes=-1, nonlinearity=None)
    net['nin_untied'] = NINLayer(net['mul_crop'], 4, untie_biases=True)
    net['lc'] = LocallyConnected2DLayer(net['dnn_max'], 4, 3, untie_biases=True)
    net['lc_cw'] = LocallyConnected2DLayer(net['dnn_max'], 6, (3, 1), channelwise=True,
                                           flip_filters=False, nonlinearity=tanh)
    net['bn'] = BatchNormLayer(net['cc_max'], epsilon=1e-3)
    net['bn_d'] = batch_norm(DenseLayer(net['std_c'], 5, name='bn_dense'))
    net['bn_dnn'] = batch_norm_dnn(Conv2DDNNLayer(net['dnn_avg'], 3, 1, name='bn_dnn_conv'))
    net['up1_r'] = Upscale1DLayer(ReshapeLayer(net['mm'], ([0], [1], -1)), 2)
    net['up1_d'] = Upscale1DLayer(net['up1_r'], 3, mode='dilate')
    net['spp_k'] = SpatialPyramidPoolingLayer(net['mm'], [3, 2, 1], implementation='kaiming')
    net['spp_f'] = SpatialPyramidPoolingLayer(net['dnn'], [2, 1], mode='average_exc_pad')
    net['spp_d'] = SpatialPyramidPoolingDNNLayer(net['mm'], [2, 1])
    net['out'] = ConcatLayer([FlattenLayer(net['spp_k']), FlattenLayer(net['spp_f']),
                              FlattenLayer(net['spp_d']), FlattenLayer(net['lc']),
                              FlattenLayer(net['lc_cw']), FlattenLayer(net['bn']), net['bn_d'],
                              FlattenLayer(net['bn_dnn']), FlattenLayer(net['up1_d']),
                              FlattenLayer(net['dense_nla']), FlattenLayer(net['dense_neg']),
                              FlattenLayer(net['cat_w']), FlattenLayer(net['nin_untied']),
                              net['lnorm'], GlobalPoolLayer(net['cc_max'])])
    return net
'''

#: The constructor calls of :data:`CATALOGUE_MASTER_SCRIPT`, layer by layer (names as Migrator's
#: description gives them): ``name -> (class, the arguments the script passes)``, including the
#: values that ``batch_norm`` / ``batch_norm_dnn`` / ``instance_norm`` / ``layer_norm`` pass
#: (lasagne/layers/normalization.py, dnn.py of Lasagne master) and the nonlinearity they move
#: from the wrapped layer to a NonlinearityLayer.  The Theano-side reference
#: (:data:`CATALOGUE_THEANO_SCRIPT`) completes them with master's own defaults, written there as
#: literals, so no constructor value of the reference comes from Migrator's recorder classes.
#: Keep in step with the script (a layer missing here fails the test).
CATALOGUE_MASTER_CALLS: dict[str, tuple[str, dict]] = {
    "dnn": ("Conv2DDNNLayer", {"pad": 1, "nonlinearity": "tanh"}),
    "mm": ("Conv2DMMLayer", {"pad": "same", "nonlinearity": "tanh"}),
    "cc": ("Conv2DCCLayer", {"pad": 2, "stride": 2, "untie_biases": True, "nonlinearity": "tanh"}),
    "mm_flip": ("Conv2DMMLayer", {"pad": "full", "flip_filters": True, "nonlinearity": None}),
    "dnn_max": ("MaxPool2DDNNLayer", {"pool_size": 3, "stride": 2, "pad": 1}),
    "dnn_avg": ("Pool2DDNNLayer", {"pool_size": (3, 2), "stride": (2, 1), "pad": (1, 1),
                                   "mode": "average_exc_pad"}),
    "cc_max": ("MaxPool2DCCLayer", {"pool_size": 3, "stride": 2}),
    "scale": ("ScaleLayer", {}),
    "bias": ("BiasLayer", {}),
    "prelu": ("ParametricRectifierLayer", {}),
    "prelu_all": ("ParametricRectifierLayer", {"shared_axes": "all"}),
    "rrelu": ("RandomizedRectifierLayer", {"lower": 0.2, "upper": 0.5}),
    "std_sp": ("StandardizationLayer", {}),
    "std_ft": ("StandardizationLayer", {"axes": "features", "epsilon": 1e-3}),
    "std_c": ("StandardizationLayer", {"axes": 1}),
    # instance_norm(Conv2DDNNLayer(net['prelu'], 4, 3, pad=1, name='in_conv'))
    "in_conv": ("Conv2DDNNLayer", {"pad": 1, "nonlinearity": None}),        # moved below
    "in_conv_in": ("StandardizationLayer", {"axes": "spatial"}),
    "in_conv_in_scale": ("ScaleLayer", {"shared_axes": "auto"}),
    "in_conv_in_bias": ("BiasLayer", {"shared_axes": "auto"}),
    "in_conv_in_nonlin": ("NonlinearityLayer", {"nonlinearity": "rectify"}),  # Conv2DDNNLayer's default
    # layer_norm(DenseLayer(net['std_c'], 7, name='ln_dense'))
    "ln_dense": ("DenseLayer", {"nonlinearity": None}),                      # moved below
    "ln_dense_ln": ("StandardizationLayer", {"axes": "features"}),
    "ln_dense_ln_scale": ("ScaleLayer", {"shared_axes": "auto"}),
    "ln_dense_ln_bias": ("BiasLayer", {"shared_axes": "auto"}),
    "ln_dense_ln_nonlin": ("NonlinearityLayer", {"nonlinearity": "rectify"}),  # DenseLayer's default
    "noise": ("GaussianNoiseLayer", {}),
    "drop": ("DropoutLayer", {"p": 0.3}),
    "cat_crop": ("ConcatLayer", {"cropping": [None, None, "center", "lower"]}),
    "sum_crop": ("ElemwiseSumLayer", {"coeffs": [0.5, -1.0, 2.0],
                                      "cropping": [None, None, "upper", "center"]}),
    "mul_crop": ("ElemwiseMergeLayer", {"merge_function": "mul",
                                        "cropping": [None, None, "lower", "upper"]}),
    "cat_w": ("ConcatLayer", {"axis": -1, "cropping": [None, "center", "lower", None]}),
    "ReshapeLayer_2": ("ReshapeLayer", {"shape": [[0], [1], -1]}),
    "dense_nla": ("DenseLayer", {"num_leading_axes": 2, "nonlinearity": "tanh"}),
    "dense_neg": ("DenseLayer", {"num_leading_axes": -1, "nonlinearity": None}),
    "nin_untied": ("NINLayer", {"untie_biases": True}),
    "lc": ("LocallyConnected2DLayer", {"filter_size": 3, "untie_biases": True}),
    "lc_cw": ("LocallyConnected2DLayer", {"filter_size": (3, 1), "channelwise": True,
                                          "flip_filters": False, "nonlinearity": "tanh"}),
    "bn": ("BatchNormLayer", {"epsilon": 1e-3}),
    # batch_norm(DenseLayer(net['std_c'], 5, name='bn_dense'))
    "bn_dense": ("DenseLayer", {"nonlinearity": None}),                      # moved below
    "bn_dense_bn": ("BatchNormLayer", {}),
    "bn_dense_bn_nonlin": ("NonlinearityLayer", {"nonlinearity": "rectify"}),  # DenseLayer's default
    # batch_norm_dnn(Conv2DDNNLayer(net['dnn_avg'], 3, 1, name='bn_dnn_conv'))
    "bn_dnn_conv": ("Conv2DDNNLayer", {"nonlinearity": None}),               # moved below
    "bn_dnn_conv_bn": ("BatchNormDNNLayer", {}),
    "bn_dnn_conv_bn_nonlin": ("NonlinearityLayer", {"nonlinearity": "rectify"}),
    "ReshapeLayer_1": ("ReshapeLayer", {"shape": [[0], [1], -1]}),
    "up1_r": ("Upscale1DLayer", {"scale_factor": 2}),
    "up1_d": ("Upscale1DLayer", {"scale_factor": 3, "mode": "dilate"}),
    "spp_k": ("SpatialPyramidPoolingLayer", {"pool_dims": [3, 2, 1], "implementation": "kaiming"}),
    "spp_f": ("SpatialPyramidPoolingLayer", {"pool_dims": [2, 1], "mode": "average_exc_pad"}),
    "spp_d": ("SpatialPyramidPoolingDNNLayer", {"pool_dims": [2, 1]}),
    **{f"FlattenLayer_{i}": ("FlattenLayer", {}) for i in range(1, 13)},
    "GlobalPoolLayer_1": ("GlobalPoolLayer", {}),
    "out": ("ConcatLayer", {}),
}

#: Appended to THEANO_LAYERS_SCRIPT (before its run loop) by :data:`CATALOGUE_THEANO_SCRIPT`:
#: the master classes THEANO_LAYERS_SCRIPT does not build, from Lasagne master's
#: get_output_for (deterministic), the rest delegated to its layer_expr.
_CATALOGUE_EXPR = r'''
_base_layer_expr = layer_expr

def autocrop(inputs, cropping):
    # lasagne.layers.merge.autocrop (master)
    if cropping is None:
        return inputs
    ndim = inputs[0].ndim
    shapes = [x.shape for x in inputs]
    min_shape = T.min(T.as_tensor_variable(shapes), axis=0)
    cropping = list(cropping) + [None] * (ndim - len(cropping))
    slices = [[] for _ in inputs]
    for dim, cr in enumerate(cropping):
        if cr is None:
            for s in slices:
                s.append(slice(None))
            continue
        sz = min_shape[dim]
        for sh, s in zip(shapes, slices):
            if cr == 'lower':
                s.append(slice(None, sz))
            elif cr == 'upper':
                s.append(slice(-sz, None))
            else:
                off = (sh[dim] - sz) // 2
                s.append(slice(off, off + sz))
    return [x[tuple(s)] for x, s in zip(inputs, slices)]

def layer_expr(L, xs):
    k, a = L["known"], L["attrs"]
    x = xs[0] if xs else None
    if k == "DenseLayer" and a.get("num_leading_axes", 1) < 0:
        # master: num_leading_axes += input.ndim, then as usual
        a = dict(a, num_leading_axes=a["num_leading_axes"] + x.ndim)
        return _base_layer_expr(dict(L, attrs=a), xs)
    if k == "RandomizedRectifierLayer":
        return T.nnet.relu(x, (a["upper"] + a["lower"]) / 2.0)
    if k == "StandardizationLayer":
        axes = tuple(a["axes"])
        mean = x.mean(axes, keepdims=True)
        std = T.sqrt(x.var(axes, keepdims=True) + a["epsilon"])
        return (x - mean) / std
    if k == "MaxPool2DCCLayer":
        # cuda-convnet max pooling: windows start at 0 and the last one is clipped at the
        # border (Lasagne passes ignore_border=False), i.e. Theano's pool_2d ignore_border=False
        stride = a["stride"] if a.get("stride") is not None else a["pool_size"]
        return pool_2d(x, ws=tuple(a["pool_size"]), stride=tuple(stride), ignore_border=False,
                       mode="max")
    if k == "ConcatLayer" and a.get("cropping") is not None:
        return T.concatenate(autocrop(xs, a["cropping"]), axis=a["axis"])
    if k == "ElemwiseSumLayer" and a.get("cropping") is not None:
        ys = [xi * c if c != 1 else xi for c, xi in zip(a["coeffs"], xs)]
        out = None
        for y in autocrop(ys, a["cropping"]):
            out = y if out is None else out + y
        return out
    if k == "ElemwiseMergeLayer":
        f = getattr(T, fname(a["merge_function"]))
        out = None
        for y in autocrop(xs, a.get("cropping")):
            out = y if out is None else f(out, y)
        return out
    if k == "GlobalPoolLayer":
        return getattr(T, fname(a["pool_function"]))(x.flatten(3), axis=2)
    if k == "FeaturePoolLayer":
        ax, p = a["axis"] % x.ndim, a["pool_size"]
        shp = tuple(x.shape[i] for i in range(ax)) + (x.shape[ax] // p, p) + \
            tuple(x.shape[i] for i in range(ax + 1, x.ndim))
        return getattr(T, fname(a["pool_function"]))(x.reshape(shp, ndim=x.ndim + 1), axis=ax + 1)
    if k == "FeatureWTALayer":
        ax, p = a["axis"] % x.ndim, a["pool_size"]
        shp = tuple(x.shape[i] for i in range(ax)) + (x.shape[ax] // p, p) + \
            tuple(x.shape[i] for i in range(ax + 1, x.ndim))
        r = x.reshape(shp, ndim=x.ndim + 1)
        idx = T.argmax(r, axis=ax + 1, keepdims=True)
        ar = T.arange(p).dimshuffle(*(["x"] * (ax + 1) + [0] + ["x"] * (x.ndim - ax - 1)))
        return x * T.reshape(T.eq(idx, ar), x.shape)
    if k == "Upscale1DLayer":
        # master's Upscale1DLayer.get_output_for
        sa = a["scale_factor"][0]
        if a["mode"] == "repeat":
            return T.extra_ops.repeat(x, sa, 2) if sa > 1 else x
        z = T.zeros((x.shape[0], x.shape[1], x.shape[2] * sa), dtype=x.dtype)
        return T.set_subtensor(z[:, :, ::sa], x)
    if k == "LocallyConnected2DLayer":
        # master's LocallyConnected2DLayer.convolve, then BaseConvLayer's bias + nonlinearity
        ps = {p["name"]: param(p["index"]) for p in L["params"]}
        W, fs, flip, cw = ps["W"], a["filter_size"], a["flip_filters"], a["channelwise"]
        oshape = L["output_shape"]
        i, j = fs[0] // 2, fs[1] // 2
        fh, fw = (-i - 1 if flip else i), (-j - 1 if flip else j)
        conved = x * W[:, fh, fw, :, :] if cw else \
            (x[:, None, :, :, :] * W[:, :, fh, fw, :, :]).sum(axis=-3)
        for i in range(fs[0]):
            fh = -i - 1 if flip else i
            ii = i - (fs[0] // 2)
            ih = slice(max(ii, 0), min(ii + oshape[-2], oshape[-2]))
            oh = slice(max(-ii, 0), min(-ii + oshape[-2], oshape[-2]))
            for j in range(fs[1]):
                fw = -j - 1 if flip else j
                jj = j - (fs[1] // 2)
                iw = slice(max(jj, 0), min(jj + oshape[-1], oshape[-1]))
                ow = slice(max(-jj, 0), min(-jj + oshape[-1], oshape[-1]))
                if ii == jj == 0:
                    continue
                if cw:
                    inc = x[:, :, ih, iw] * W[:, fh, fw, oh, ow]
                else:
                    inc = (x[:, None, :, ih, iw] * W[:, :, fh, fw, oh, ow]).sum(axis=-3)
                conved = T.inc_subtensor(conved[:, :, oh, ow], inc)
        if "b" in ps:
            conved = conved + (ps["b"].dimshuffle("x", 0, 1, 2) if a.get("untie_biases")
                               else ps["b"].dimshuffle("x", 0, "x", "x"))
        return nonlin(a.get("nonlinearity"), conved)
    if k in ("SpatialPyramidPoolingLayer", "SpatialPyramidPoolingDNNLayer"):
        # master's get_output_for: 'kaiming' = pool_2d_nxn_regions; 'fast' (and cuDNN's
        # dnn_pool with the same window / stride) = pool_2d
        impl = a.get("implementation", "fast") if k == "SpatialPyramidPoolingLayer" else "fast"
        pool_list = []
        for n in a["pool_dims"]:
            if impl == "kaiming":
                op = T.max if a["mode"] == "max" else T.mean
                h, w = x.shape[2:]
                nf = float(n)
                for row in range(n):
                    for col in range(n):
                        sh = T.floor(row / nf * h).astype('int32')
                        eh = T.ceil((row + 1) / nf * h).astype('int32')
                        sw = T.floor(col / nf * w).astype('int32')
                        ew = T.ceil((col + 1) / nf * w).astype('int32')
                        pool_list.append(op(x[:, :, sh:eh, sw:ew], axis=(2, 3)).dimshuffle(0, 1, 'x'))
            else:
                size = x.shape[2:]
                win = tuple((i + n - 1) // n for i in size)
                st = tuple(i // n for i in size)
                pool_list.append(pool_2d(x, ws=win, stride=st, mode=a["mode"], pad=None,
                                         ignore_border=True).flatten(3))
        return T.concatenate(pool_list, axis=2)
    return _base_layer_expr(L, xs)

# ---- constructor values: the script's own arguments (IN[tag + 'calls'], from
# CATALOGUE_MASTER_CALLS) completed with Lasagne master's defaults, written here as literals
# from master's source (github.com/Lasagne/Lasagne, lasagne/layers/<file>.py), never taken
# from the description's attrs (Migrator's recorder classes fill those).
_RECT = "rectify"
MASTER_DEFAULTS = {
    # dnn.py Conv2DDNNLayer / corrmm.py Conv2DMMLayer / cuda_convnet.py Conv2DCCLayer
    "Conv2DDNNLayer": {"stride": (1, 1), "pad": 0, "untie_biases": False, "nonlinearity": _RECT,
                       "flip_filters": False},
    "Conv2DMMLayer": {"stride": (1, 1), "pad": 0, "untie_biases": False, "nonlinearity": _RECT,
                      "flip_filters": False},
    "Conv2DCCLayer": {"stride": (1, 1), "pad": 0, "untie_biases": False, "nonlinearity": _RECT,
                      "flip_filters": False},
    # dnn.py Pool2DDNNLayer / MaxPool2DDNNLayer (mode='max' passed by the subclass)
    "Pool2DDNNLayer": {"stride": None, "pad": (0, 0), "ignore_border": True, "mode": "max"},
    "MaxPool2DDNNLayer": {"stride": None, "pad": (0, 0), "ignore_border": True, "mode": "max"},
    # cuda_convnet.py MaxPool2DCCLayer
    "MaxPool2DCCLayer": {"stride": None, "ignore_border": False},
    # special.py
    "NonlinearityLayer": {"nonlinearity": _RECT},
    "ScaleLayer": {"shared_axes": "auto"},
    "BiasLayer": {"shared_axes": "auto"},
    "ParametricRectifierLayer": {"shared_axes": "auto"},
    "RandomizedRectifierLayer": {"lower": 0.3, "upper": 0.8, "shared_axes": "auto"},
    # normalization.py
    "StandardizationLayer": {"axes": "auto", "epsilon": 1e-4},
    "BatchNormLayer": {"axes": "auto", "epsilon": 1e-4, "alpha": 0.1},
    # dnn.py BatchNormDNNLayer / SpatialPyramidPoolingDNNLayer
    "BatchNormDNNLayer": {"axes": "auto", "epsilon": 1e-4, "alpha": 0.1},
    "SpatialPyramidPoolingDNNLayer": {"pool_dims": [4, 2, 1], "mode": "max"},
    # noise.py
    "GaussianNoiseLayer": {"sigma": 0.1},
    "DropoutLayer": {"p": 0.5, "rescale": True, "shared_axes": ()},
    # merge.py
    "ConcatLayer": {"axis": 1, "cropping": None},
    "ElemwiseSumLayer": {"coeffs": 1, "cropping": None},
    "ElemwiseMergeLayer": {"cropping": None},
    # dense.py
    "DenseLayer": {"nonlinearity": _RECT, "num_leading_axes": 1},
    "NINLayer": {"untie_biases": False, "nonlinearity": _RECT},
    # local.py LocallyConnected2DLayer
    "LocallyConnected2DLayer": {"stride": (1, 1), "pad": "same", "untie_biases": False,
                                "nonlinearity": _RECT, "flip_filters": True, "channelwise": False},
    # pool.py
    "Upscale1DLayer": {"mode": "repeat"},
    "GlobalPoolLayer": {"pool_function": "mean"},
    "SpatialPyramidPoolingLayer": {"pool_dims": [4, 2, 1], "mode": "max", "implementation": "fast"},
    # shape.py
    "FlattenLayer": {"outdim": 2},
    "ReshapeLayer": {},
}

def _tup(v, n):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) * n

def _fn(name):
    return None if name is None else {"__callable__": name}

def master_attrs(cls, given, ndim, n_in):
    """The attrs layer_expr reads, resolved as master's constructors resolve them."""
    a = dict(MASTER_DEFAULTS[cls])
    a.update(given)
    if "nonlinearity" in a:
        a["nonlinearity"] = _fn(a["nonlinearity"])      # None: master's identity
    for k in ("pool_function", "merge_function"):
        if k in a:
            a[k] = _fn(a[k])
    if cls.startswith("Conv2D") or cls == "LocallyConnected2DLayer":
        a["stride"] = _tup(a["stride"], 2)
        if a["pad"] == "valid":
            a["pad"] = (0, 0)
        elif a["pad"] not in ("same", "full"):
            a["pad"] = _tup(a["pad"], 2)
        if "filter_size" in a:
            a["filter_size"] = _tup(a["filter_size"], 2)
    if "pool_size" in a:
        a["pool_size"] = _tup(a["pool_size"], 2)
        a["stride"] = a["pool_size"] if a["stride"] is None else _tup(a["stride"], 2)
        if "pad" in a:
            a["pad"] = _tup(a["pad"], 2)
    if "shared_axes" in a and cls != "DropoutLayer":
        sa = a["shared_axes"]
        if sa == "auto":
            sa = (0,) + tuple(range(2, ndim))
        elif sa == "all":
            sa = tuple(range(ndim))
        a["shared_axes"] = _tup(sa, 1)
    if cls == "StandardizationLayer":
        ax = a["axes"]
        if ax == "auto":
            ax = (1,) if ndim == 2 else tuple(range(2, ndim))
        elif ax == "spatial":
            ax = tuple(range(2, ndim))
        elif ax == "features":
            ax = tuple(range(1, ndim))
        a["axes"] = _tup(ax, 1)
    if cls in ("BatchNormLayer", "BatchNormDNNLayer"):
        ax = a["axes"]
        a["axes"] = (0,) + tuple(range(2, ndim)) if ax == "auto" else _tup(ax, 1)
    if cls == "Upscale1DLayer":
        a["scale_factor"] = _tup(a["scale_factor"], 1)
    if cls == "ElemwiseSumLayer" and not isinstance(a["coeffs"], (list, tuple)):
        a["coeffs"] = [a["coeffs"]] * n_in
    return a

_described_layer_expr = layer_expr

def layer_expr(L, xs):
    key = TAG[0] + "calls"
    if key in IN and L["known"] != "InputLayer":
        calls = json.loads(str(IN[key]))
        if L["name"] not in calls:
            raise KeyError("no constructor call recorded for layer %r" % L["name"])
        cls, given = calls[L["name"]]
        if cls != L["known"]:
            raise ValueError("layer %r: the script builds a %s, the description says %s"
                             % (L["name"], cls, L["known"]))
        L = dict(L, attrs=master_attrs(cls, given, xs[0].ndim if xs else 0, len(xs)))
    return _described_layer_expr(L, xs)

'''

CATALOGUE_THEANO_SCRIPT = THEANO_LAYERS_SCRIPT.replace("\ndef run_model(tag):",
                                                       _CATALOGUE_EXPR + "\ndef run_model(tag):", 1)
assert CATALOGUE_THEANO_SCRIPT != THEANO_LAYERS_SCRIPT
