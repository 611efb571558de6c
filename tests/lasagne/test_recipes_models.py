"""Lasagne Recipes' U-Net and C3D, the layers that moved or padded the batch axis, and the 3-D
transposed convolution / upscaling -- against the real Theano (and real Lasagne 0.1 where it
has the classes).

* U-Net (Recipes ``modelzoo/Unet.py``, Fabian Isensee): written here again from the public
  definition, scaled down (16x16 input, 2 base filters): four levels of two ``batch_norm``-ed
  3x3 'same' convolutions with ELU then 2x2 pooling, the two-convolution bottleneck, four
  ``Deconv2DLayer(stride 2, crop 'valid')`` + ``ConcatLayer(cropping centre)`` + two convolutions,
  a 1x1 convolution, and the per-pixel softmax idiom ``DimshuffleLayer((1, 0, 2, 3))`` ->
  ``ReshapeLayer((classes, -1))`` -> ``DimshuffleLayer((1, 0))`` -> softmax: output (N*H*W, classes).
  ``Conv2DLayer`` stands for ``Conv2DDNNLayer`` as in the Recipes file without cuDNN.
* C3D (Recipes ``modelzoo/c3d.py``, Michael Gygli): the same layer sequence (``Conv3DDNNLayer``,
  ``MaxPool3DDNNLayer``, the right-only ``PadLayer(width=[(0, 1), (0, 1)], batch_ndim=3)`` before
  pool5, three dense layers, softmax), channels divided by 32 on a 3x16x16x16 clip.
* Both use classes of Lasagne master, which PyPI does not have (the Theano environment has
  Lasagne 0.1; C3D's cuDNN classes do not even import without a GPU), so they are compared with
  Theano's own ops written from master's ``get_output_for`` (the description-driven
  ``CATALOGUE_THEANO_SCRIPT`` for U-Net, the explicit script below for C3D and the 3-D layers):
  AbstractConv3d_gradInputs with ``filter_flip = not flip_filters`` for TransposedConv3DLayer,
  ``T.extra_ops.repeat`` / ``set_subtensor`` for Upscale3DLayer, ``padding.pad``'s
  ``set_subtensor`` for PadLayer.
* The batch-moving dimshuffles and reshapes, and PadLayer with any batch_ndim and value, exist in
  Lasagne 0.1: a network of them is run by the real Lasagne 0.1 after checking that the recorder
  describes it like the real one.

Every layer: Migrator's numpy reference and the converted Keras model (chained) within 1e-5
relative to the layer's largest value; the comparison engine passes too (outputs whose first
axis is not the batch are compared as whole tensors).
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests import proofs

from . import keras_outputs_by_source

TOL = 1e-5


def _rel(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
                 / max(1e-6, float(np.abs(b).max())))


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------
def unet_script(size: int = 16, base: int = 2, classes: int = 2, depth: int = 4) -> str:
    """Recipes' build_UNet structure (pad='same', ELU, no dropout), scaled down."""
    return M.HEADER + f'''
from collections import OrderedDict
from lasagne.layers import Deconv2DLayer
from lasagne.nonlinearities import elu


def conv_bn(incoming, filters):
    return batch_norm(Conv2DLayer(incoming, filters, 3, pad='same', nonlinearity=elu))


def build_model():
    net = OrderedDict()
    net['input'] = InputLayer((None, 1, {size}, {size}))
    skips, top, width = [], net['input'], {base}
    for level in range(1, {depth} + 1):
        net['contr_%d_1' % level] = conv_bn(top, width)
        net['contr_%d_2' % level] = conv_bn(net['contr_%d_1' % level], width)
        skips.append((net['contr_%d_2' % level], width))
        top = net['pool%d' % level] = Pool2DLayer(net['contr_%d_2' % level], 2)
        width *= 2
    net['encode_1'] = conv_bn(top, width)
    top = net['encode_2'] = conv_bn(net['encode_1'], width)
    for step, (skip, w) in enumerate(reversed(skips), start=1):
        net['upscale%d' % step] = batch_norm(Deconv2DLayer(top, width, 2, 2, crop='valid',
                                                           nonlinearity=elu))
        net['concat%d' % step] = ConcatLayer([net['upscale%d' % step], skip],
                                             cropping=(None, None, 'center', 'center'))
        net['expand_%d_1' % step] = conv_bn(net['concat%d' % step], w)
        top = net['expand_%d_2' % step] = conv_bn(net['expand_%d_1' % step], w)
        width = w
    net['output_segmentation'] = Conv2DLayer(top, {classes}, 1, nonlinearity=None)
    net['dimshuffle'] = DimshuffleLayer(net['output_segmentation'], (1, 0, 2, 3))
    net['reshapeSeg'] = ReshapeLayer(net['dimshuffle'], ({classes}, -1))
    net['dimshuffle2'] = DimshuffleLayer(net['reshapeSeg'], (1, 0))
    net['output_flattened'] = NonlinearityLayer(net['dimshuffle2'], nonlinearity=softmax)
    return net
'''


#: channel counts of Recipes' C3D divided by 32 (64 ... 4096 -> 2 ... 128), 10 classes
C3D_WIDTHS = {"conv1a": 2, "conv2a": 4, "conv3a": 8, "conv3b": 8, "conv4a": 16, "conv4b": 16,
              "conv5a": 16, "conv5b": 16, "fc6-1": 32, "fc7-1": 32, "fc8-1": 10}

C3D_SCRIPT = '''
import lasagne
from lasagne.layers.shape import PadLayer
from lasagne.layers import InputLayer, DenseLayer, NonlinearityLayer
from lasagne.layers.dnn import Conv3DDNNLayer, MaxPool3DDNNLayer
from lasagne.nonlinearities import softmax, rectify

W = WIDTHS


def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 16, 16, 16))
    net['conv1a'] = Conv3DDNNLayer(net['input'], W['conv1a'], (3, 3, 3), pad=1,
                                   nonlinearity=rectify, flip_filters=False)
    net['pool1'] = MaxPool3DDNNLayer(net['conv1a'], pool_size=(1, 2, 2), stride=(1, 2, 2))
    top = net['pool1']
    for group, convs in ((2, 'a'), (3, 'ab'), (4, 'ab'), (5, 'ab')):
        for c in convs:
            name = 'conv%d%s' % (group, c)
            top = net[name] = Conv3DDNNLayer(top, W[name], (3, 3, 3), pad=1, nonlinearity=rectify)
        if group < 5:
            top = net['pool%d' % group] = MaxPool3DDNNLayer(top, pool_size=(2, 2, 2),
                                                             stride=(2, 2, 2))
    # C3D pads only on the right before pool5: the last two axes, after 3 leading ones
    net['pad'] = PadLayer(top, width=[(0, 1), (0, 1)], batch_ndim=3)
    net['pool5'] = MaxPool3DDNNLayer(net['pad'], pool_size=(2, 2, 2), pad=(0, 0, 0), stride=(2, 2, 2))
    net['fc6-1'] = DenseLayer(net['pool5'], num_units=W['fc6-1'], nonlinearity=rectify)
    net['fc7-1'] = DenseLayer(net['fc6-1'], num_units=W['fc7-1'], nonlinearity=rectify)
    net['fc8-1'] = DenseLayer(net['fc7-1'], num_units=W['fc8-1'], nonlinearity=None)
    net['prob'] = NonlinearityLayer(net['fc8-1'], softmax)
    return net
'''.replace("WIDTHS", repr(C3D_WIDTHS))

#: TransposedConv3DLayer / Deconv3DLayer (crop int, triple, 'same', 'full'; flip_filters both;
#: strides), Upscale3DLayer (repeat, dilate), PadLayer of a rank-5 tensor, the dimshuffle of C3D
#: clips to (frames, N, ...) and back
THREE_D_SCRIPT = M.HEADER + '''
from lasagne.layers import TransposedConv3DLayer, Deconv3DLayer, Upscale3DLayer


def build_model():
    net = {}
    net['input'] = InputLayer((None, 2, 3, 4, 5))
    net['tc1'] = TransposedConv3DLayer(net['input'], 3, (2, 3, 2), stride=(2, 1, 3), crop=(0, 1, 1))
    net['up1'] = Upscale3DLayer(net['tc1'], (1, 2, 3))
    net['up2'] = Upscale3DLayer(net['up1'], 2, mode='dilate')
    net['tc2'] = Deconv3DLayer(net['up2'], 2, 3, crop='same', flip_filters=True, nonlinearity=tanh)
    net['tc3'] = TransposedConv3DLayer(net['tc2'], 3, (1, 2, 3), stride=2, crop='full',
                                       nonlinearity=None, b=None)
    net['pad'] = PadLayer(net['tc3'], width=[(1, 2), (0, 1)], batch_ndim=3)
    net['pad2'] = PadLayer(net['pad'], width=1, val=-2.)
    net['frames'] = DimshuffleLayer(net['pad2'], (2, 0, 1, 3, 4))
    net['back'] = DimshuffleLayer(net['frames'], (1, 2, 0, 3, 4))
    return net
'''

#: Lasagne 0.1 has these classes: run by the real Lasagne.  PadLayer with batch_ndim 3 (C3D's)
#: and 1 (channels too) and a value, the U-Net softmax idiom, a reshape mixing the batch axis.
BATCH_MOVES_01 = '''
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, PadLayer, DimshuffleLayer, ReshapeLayer,
                            NonlinearityLayer, ConcatLayer)
from lasagne.nonlinearities import softmax


def build_model():
    net = {}
    net['input'] = InputLayer((None, 2, 6, 5))
    net['pad_w'] = PadLayer(net['input'], width=[(1, 0)], batch_ndim=3, val=0.5)
    net['pad_c'] = PadLayer(net['pad_w'], width=[(1, 1), (0, 2), 1], batch_ndim=1)
    net['conv'] = Conv2DLayer(net['pad_c'], 3, 3, pad='same', nonlinearity=None)
    net['dimshuffle'] = DimshuffleLayer(net['conv'], (1, 0, 2, 3))
    net['reshapeSeg'] = ReshapeLayer(net['dimshuffle'], (3, -1))
    net['dimshuffle2'] = DimshuffleLayer(net['reshapeSeg'], (1, 0))
    net['softmax'] = NonlinearityLayer(net['dimshuffle2'], softmax)
    net['rows'] = ReshapeLayer(net['conv'], (-1, [1]))
    net['hwnc'] = DimshuffleLayer(net['conv'], (2, 3, 0, 1))
    net['cols'] = ReshapeLayer(net['hwnc'], (-1, 3))
    net['prob'] = ConcatLayer([net['softmax'], net['rows'], net['cols']], axis=1)
    return net
'''

REAL_FORWARD = r'''
import runpy, theano, lasagne
ns = runpy.run_path(str(IN["builder"]), run_name="__migrator_builder__")
net = ns["build_model"]()
out = net["prob"]
layers = lasagne.layers.get_all_layers(out)
lasagne.layers.set_all_param_values(out, [IN["param__%d" % i] for i in range(int(IN["n_params"]))])
exprs = lasagne.layers.get_output(layers[1:], deterministic=True)
f = theano.function([layers[0].input_var], exprs)
for i, v in enumerate(f(IN["x"])):
    OUT["layer__%d" % (i + 1)] = v
'''

#: C3D and the 3-D layers with Theano's ops, from master's get_output_for.  ``IN['layers']``:
#: JSON [[name, kind, inputs, settings]] in graph order; parameters by layer name.
THEANO_3D = r'''
import json
import theano, theano.tensor as T
from theano.tensor.nnet import conv3d
from theano.tensor.nnet.abstract_conv import AbstractConv3d_gradInputs
from theano.tensor.signal.pool import pool_3d
NL = {"relu": T.nnet.relu, "tanh": T.tanh, "softmax": T.nnet.softmax, None: lambda v: v}
x = T.TensorType("float32", (False,) * 5)("x")
o = {"input": x}
def p(name, key):
    k = "p__%s__%s" % (name, key)
    return theano.shared(IN[k]) if k in IN else None
for name, kind, ins, s in json.loads(str(IN["layers"])):
    v = o[ins[0]]
    if kind == "conv3d":          # Conv3DDNNLayer: conv3d(border_mode=pad, filter_flip=flip_filters)
        y = conv3d(v, p(name, "W"), border_mode=tuple(s["pad"]), subsample=tuple(s["stride"]),
                   filter_flip=s["flip_filters"]) + p(name, "b").dimshuffle("x", 0, "x", "x", "x")
        y = NL[s["nl"]](y)
    elif kind == "pool3d":        # MaxPool3DDNNLayer: pool_3d(ignore_border=True)
        y = pool_3d(v, tuple(s["pool_size"]), ignore_border=True, stride=tuple(s["stride"]),
                    pad=tuple(s["pad"]), mode="max")
    elif kind == "pad":           # lasagne.theano_extensions.padding.pad
        shp, idx = list(v.shape), [slice(None)] * v.ndim
        for k, (l, r) in enumerate(s["width"]):
            a = s["batch_ndim"] + k
            shp[a] = v.shape[a] + l + r
            idx[a] = slice(l, l + v.shape[a])
        out = T.ones(shp) * s["val"] if s["val"] else T.zeros(shp)
        y = T.set_subtensor(out[tuple(idx)], v)
    elif kind == "dense":
        y = T.dot(v.flatten(2), p(name, "W")) + p(name, "b")
        y = NL[s["nl"]](y)
    elif kind == "softmax":
        y = T.nnet.softmax(v)
    elif kind == "tconv3d":       # TransposedConv3DLayer.convolve
        W = p(name, "W")
        op = AbstractConv3d_gradInputs(imshp=tuple(s["out_shape"]), kshp=tuple(s["W_shape"]),
                                       subsample=tuple(s["stride"]),
                                       border_mode=s["crop"] if isinstance(s["crop"], str) else tuple(s["crop"]),
                                       filter_flip=not s["flip_filters"])
        y = op(W, v, tuple(s["out_shape"][2:]))
        b = p(name, "b")
        if b is not None:
            y = y + b.dimshuffle("x", 0, "x", "x", "x")
        y = NL[s["nl"]](y)
    elif kind == "upscale3d":     # Upscale3DLayer.get_output_for
        a, b, c = s["scale"]
        if s["mode"] == "repeat":
            y = v
            if c > 1:
                y = T.extra_ops.repeat(y, c, 4)
            if b > 1:
                y = T.extra_ops.repeat(y, b, 3)
            if a > 1:
                y = T.extra_ops.repeat(y, a, 2)
        else:
            z = T.zeros((v.shape[0], v.shape[1], v.shape[2] * a, v.shape[3] * b, v.shape[4] * c))
            y = T.set_subtensor(z[:, :, ::a, ::b, ::c], v)
    elif kind == "dimshuffle":
        y = v.dimshuffle(*s["pattern"])
    o[name] = y
names = [n for n in o if n != "input"]
for k, v in zip(names, theano.function([x], [o[n] for n in names])(IN["x"])):
    OUT[k] = v
'''

# the 3-D layers of THREE_D_SCRIPT as THEANO_3D layers (the settings are the script's own)
_RELU, _TANH = "relu", "tanh"
THREE_D_LAYERS = [
    ["tc1", "tconv3d", ["input"], {"stride": [2, 1, 3], "crop": [0, 1, 1], "flip_filters": False,
                                   "nl": _RELU}],
    ["up1", "upscale3d", ["tc1"], {"scale": [1, 2, 3], "mode": "repeat"}],
    ["up2", "upscale3d", ["up1"], {"scale": [2, 2, 2], "mode": "dilate"}],
    ["tc2", "tconv3d", ["up2"], {"stride": [1, 1, 1], "crop": "half", "flip_filters": True,
                                 "nl": _TANH}],        # master: crop 'same' -> border_mode 'half'
    ["tc3", "tconv3d", ["tc2"], {"stride": [2, 2, 2], "crop": "full", "flip_filters": False,
                                 "nl": None}],
    ["pad", "pad", ["tc3"], {"width": [[1, 2], [0, 1]], "batch_ndim": 3, "val": 0.0}],
    ["pad2", "pad", ["pad"], {"width": [[1, 1], [1, 1], [1, 1]], "batch_ndim": 2, "val": -2.0}],
    ["frames", "dimshuffle", ["pad2"], {"pattern": [2, 0, 1, 3, 4]}],
    ["back", "dimshuffle", ["frames"], {"pattern": [1, 2, 0, 3, 4]}],
]


def c3d_layers() -> list:
    out, top = [], "input"
    for name in ("conv1a", "pool1", "conv2a", "pool2", "conv3a", "conv3b", "pool3", "conv4a",
                 "conv4b", "pool4", "conv5a", "conv5b"):
        if name.startswith("conv"):
            out.append([name, "conv3d", [top], {"pad": [1, 1, 1], "stride": [1, 1, 1],
                                                "flip_filters": False, "nl": _RELU}])
        else:
            ps = [1, 2, 2] if name == "pool1" else [2, 2, 2]
            out.append([name, "pool3d", [top], {"pool_size": ps, "stride": ps, "pad": [0, 0, 0]}])
        top = name
    out += [["pad", "pad", ["conv5b"], {"width": [[0, 1], [0, 1]], "batch_ndim": 3, "val": 0.0}],
            ["pool5", "pool3d", ["pad"], {"pool_size": [2, 2, 2], "stride": [2, 2, 2], "pad": [0, 0, 0]}],
            ["fc6-1", "dense", ["pool5"], {"nl": _RELU}], ["fc7-1", "dense", ["fc6-1"], {"nl": _RELU}],
            ["fc8-1", "dense", ["fc7-1"], {"nl": None}], ["prob", "softmax", ["fc8-1"], {}]]
    return out


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def py():
    from tests.envs import theano_env as TE

    p = TE.ensure_theano_env()
    if not p:
        pytest.skip(f"the real-Theano environment is unavailable: {TE.last_reason}")
    return p


def he_3d(layer, pname, shape, rng):
    """He-scaled 3-D kernels (fan-in = in * kd * kh * kw), small biases: an unsaturated C3D."""
    if pname == "W" and len(shape) == 5:
        return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    if pname == "b":
        return rng.normal(0, 0.05, shape)
    return None


def _convert(directory, script, seed, x_shape, output_layer=None, x_seed=3, fill=None):
    """Import ``script`` (parameters from ``seed``), run the numpy reference and the Keras model on
    a random batch of 2, and the comparison engine."""
    from migrator.core.compare.engine import run_comparison
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan
    from migrator.core.reference import numpy_ref

    b, p, vals = M.write_model(directory, script, "npz", seed=seed, fill=fill)
    g = load_lasagne(b, p, output_layer=output_layer)
    x = np.random.default_rng(x_seed).normal(size=x_shape).astype(np.float32)
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, x).items()}
    plan = make_plan(g)
    assert not plan.unsupported, [(m.source, m.error) for m in plan.unsupported]
    model = build_keras(plan)
    keras = keras_outputs_by_source(model, plan, x, ref)
    res = run_comparison(g, plan, model, x)
    return {"graph": g, "plan": plan, "model": model, "x": x, "ref": ref, "keras": keras,
            "builder": b, "values": vals, "result": res}


def _check(r, real: dict, names, what: str) -> float:
    """Every named layer: the numpy reference and the Keras model vs ``real``; the worst error."""
    worst = 0.0
    rows = []
    for name in names:
        want = real[name]
        e_ref = _rel(r["ref"][name], want)
        e_k = _rel(r["keras"][name], want)
        assert e_ref <= TOL, f"numpy ref vs {what}, layer {name}: relative {e_ref:.2e}"
        assert e_k <= TOL, f"Keras vs {what}, layer {name}: relative {e_k:.2e}"
        worst = max(worst, float(np.abs(r["keras"][name].astype(np.float64) - want).max()))
        rows.append(f"{name}={e_k:.1e}")
    print(f"\nKeras vs {what} (relative): " + ", ".join(rows) + f"; worst max abs {worst:.2e}")
    return worst


def _params_by_layer(g, vals) -> dict[str, np.ndarray]:
    """``p__<layer>__<W|b>``: the file's values, by the layer owning them (description order)."""
    out = {}
    for L in g.meta["lasagne_description"]["layers"]:
        for q in L["params"]:
            out[f"p__{L['name']}__{q['name']}"] = np.asarray(vals[q["index"]], np.float32)
    return out


# --------------------------------------------------------------------------------------
# without Theano: the conversions themselves
# --------------------------------------------------------------------------------------
def test_unet_idiom_and_c3d_pad_convert(tmp_path):
    """The U-Net tail and C3D's pad map to Keras without any refusal; the comparison engine
    passes, with the batch-moving layers compared as whole tensors."""
    r = _convert(tmp_path / "u", unet_script(), seed=2, x_shape=(2, 1, 16, 16),
                 output_layer="output_flattened")
    g, plan, res = r["graph"], r["plan"], r["result"]
    assert g.node("dimshuffle").out_shape == (2, None, 16, 16)
    assert g.node("output_flattened").out_shape == (None, 2)
    assert [s.class_name for s in plan.mapping("dimshuffle").layers] == ["LasagneSourceOp"]
    assert res.passed, [(x.source, x.status, x.note) for x in res.layers if x.status == "fail"]
    whole = {x.source for x in res.layers if x.whole}
    assert whole == {"dimshuffle", "reshapeSeg", "dimshuffle2", "output_flattened"}
    out = res.layer("output_flattened")
    assert out.shape == (2 * 16 * 16, 2) and out.samples["max_abs"].shape == (1,)
    # the per-pixel probabilities: (n, y, x) row-major, each row a softmax over the classes
    np.testing.assert_allclose(r["keras"]["output_flattened"].sum(axis=1), 1.0, rtol=1e-5)
    seg = r["ref"]["output_segmentation"]
    e = np.exp(seg - seg.max(axis=1, keepdims=True))
    naive = (e / e.sum(axis=1, keepdims=True)).transpose(0, 2, 3, 1).reshape(-1, 2)
    assert _rel(r["keras"]["output_flattened"], naive) <= TOL


def test_c3d_pad_is_zero_padding_3d(tmp_path):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.mapping.planner import make_plan

    b, p, _ = M.write_model(tmp_path, C3D_SCRIPT, "npz", seed=1)
    g = load_lasagne(b, p, output_layer="prob")
    m = make_plan(g).mapping("pad")
    assert [(s.class_name, s.config) for s in m.layers] == \
        [("ZeroPadding3D", {"padding": [[0, 0], [0, 1], [0, 1]]})]
    assert g.node("pad").out_shape == (None, 16, 2, 2, 2)


def test_3d_layers_match_naive_definitions(tmp_path):
    """Keras and the numpy reference vs the layers written out in the test from master's
    definitions: the transposed convolution as a scatter of ``x * W`` (crop cut from the full
    output), repeat as np.repeat, dilate as a strided assignment."""
    r = _convert(tmp_path, THREE_D_SCRIPT, seed=7, x_shape=(2, 2, 3, 4, 5), output_layer="back")
    it = iter(r["values"])
    x = r["x"].astype(np.float64)

    def scatter(v, W, stride, crop, flip):
        W = np.asarray(W, np.float64)
        if not flip:                      # flip_filters=False: Theano's filter_flip=True
            W = W[:, :, ::-1, ::-1, ::-1]
        n, _, *L = v.shape
        full = np.zeros((n, W.shape[1]) + tuple(s * (li - 1) + k for li, k, s in zip(L, W.shape[2:], stride)))
        for idx in np.ndindex(*L):
            out = tuple(slice(s * i, s * i + k) for i, s, k in zip(idx, stride, W.shape[2:]))
            full[(slice(None), slice(None)) + out] += np.einsum("nc,co...->no...", v[(slice(None), slice(None)) + idx], W)
        return full[(slice(None), slice(None)) + tuple(slice(c, f - c) for c, f in zip(crop, full.shape[2:]))]

    want = {}
    y = scatter(x, next(it), (2, 1, 3), (0, 1, 1), False) + next(it).reshape(1, -1, 1, 1, 1)
    y = want["tc1"] = np.maximum(y, 0)
    y = want["up1"] = np.repeat(np.repeat(y, 2, axis=3), 3, axis=4)
    z = np.zeros(y.shape[:2] + tuple(2 * s for s in y.shape[2:]))
    z[:, :, ::2, ::2, ::2] = y
    y = want["up2"] = z
    y = want["tc2"] = np.tanh(scatter(y, next(it), (1, 1, 1), (1, 1, 1), True) + next(it).reshape(1, -1, 1, 1, 1))
    y = want["tc3"] = scatter(y, next(it), (2, 2, 2), (0, 1, 2), False)
    y = want["pad"] = np.pad(y, [(0, 0)] * 3 + [(1, 2), (0, 1)])
    y = want["pad2"] = np.pad(y, [(0, 0), (0, 0)] + [(1, 1)] * 3, constant_values=-2.0)
    y = want["frames"] = y.transpose(2, 0, 1, 3, 4)
    want["back"] = y.transpose(1, 2, 0, 3, 4)
    assert next(it, None) is None
    for name, w in want.items():
        for side in ("ref", "keras"):
            assert _rel(r[side][name], w) <= TOL, (side, name, _rel(r[side][name], w))
    assert r["result"].passed
    assert {x.source for x in r["result"].layers if x.whole} == {"frames"}
    ops = {n.name: n.op for n in r["graph"].nodes}
    assert ops["tc1"] == ops["tc2"] == ops["tc3"] == "Deconv3D" and ops["up1"] == "Upscale3D"
    assert r["graph"].node("tc2").attrs["flip"] is False and r["graph"].node("tc1").attrs["flip"] is True


def test_whole_tensor_outputs_fold_over_batches_and_save(tmp_path):
    """Batches of an input set fold without treating axis 0 as samples; the saved .keras
    (keras.ops on the whole tensor) loads with plain Keras and computes the same; a reshape
    whose spec infers the batch-dependent size follows the batch."""
    import keras

    from migrator.core.compare.engine import run_comparison
    from migrator.core.compare.metrics import Tolerance, compare_arrays, to_keras_layout
    from migrator.core.compare.sets import SetFolder

    r = _convert(tmp_path, BATCH_MOVES_01, seed=5, x_shape=(3, 2, 6, 5), output_layer="prob")
    g, plan, model, x = r["graph"], r["plan"], r["model"], r["x"]
    assert plan.mapping("reshapeSeg").layers[0].config == {"op": "Reshape", "shape": [3, -1]}
    folder = SetFolder()
    for lo, hi in ((0, 1), (1, 3)):
        folder.add(run_comparison(g, plan, model, x[lo:hi]), lo, hi - lo)
    res = folder.result()
    assert res.passed and res.n_samples == 3
    prob = res.layer("prob")
    assert prob.whole and prob.shape == (64, 9) and prob.worst_sample in (0, 1)
    assert res.layer("conv").shape == (3, 3, 8, 8) and not res.layer("conv").whole
    ref = r["ref"]["prob"]
    met = compare_arrays(ref, ref + 1e-3, Tolerance(), whole=True)
    assert met["sample_max_abs"].shape == (1,) and not met["passed"]
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    got = np.asarray(loaded(to_keras_layout(x)))
    assert got.shape == (3 * 64, 9)
    assert _rel(got, r["keras"]["prob"]) <= TOL


def test_compiled_feed_counts_whole_tensors_at_their_real_size(tmp_path):
    """The compiled Keras feed's memory estimate counts an output whose axis 0 is not the batch
    at its actual size (the per-pixel (N*H*W, classes) rows), not batch x its dims after axis 0:
    against the sizes the Keras model really returns, and a naive count of the U-Net idiom."""
    import keras

    from migrator.core.compare.feeds import CompiledKerasFeed, keras_feed, outputs_bytes
    from migrator.core.compare.metrics import to_keras_layout

    r = _convert(tmp_path, BATCH_MOVES_01, seed=5, x_shape=(3, 2, 6, 5), output_layer="prob")
    g, plan, model, x = r["graph"], r["plan"], r["model"], r["x"]
    names = {s.name for s in plan.keras_layers}
    wanted = {m.keras_output: 1 for m in plan.mappings if m.keras_output in names}
    order = sorted(wanted)
    sub = keras.Model(model.inputs, [model.get_layer(n).output for n in order])
    outs = sub(to_keras_layout(x), training=False)
    real = sum(4 * int(np.prod(np.asarray(o).shape)) for o in outs)
    assert outputs_bytes(g, plan, wanted, 3) == real
    prob = plan.mapping("prob").keras_output
    # conv gives 3 x 8 x 8 per sample: 64 pixel rows per sample, 3 + 3 + 3 columns
    assert outputs_bytes(g, plan, {prob: 1}, 3) == 4 * (3 * 8 * 8) * 9
    assert outputs_bytes(g, plan, {prob: 1}, 5) == 4 * (5 * 8 * 8) * 9
    shuffled = plan.mapping("dimshuffle").keras_output          # (3, N, 8, 8): samples on axis 1
    assert outputs_bytes(g, plan, {shuffled: 1}, 3) == 4 * 3 * 3 * 8 * 8
    feed = keras_feed(model, plan, to_keras_layout(x), None, wanted, {"keras_s": 0.0}, g)
    assert isinstance(feed, CompiledKerasFeed)
    feed.close()


#: ConcatLayer along axis 0 of whole tensors: the per-pixel rows of two layouts (samples mixed),
#: and two channel-major tensors (samples on axis 1); a slice of axis 0 of a whole tensor.
CONCAT_AXIS0 = '''
from lasagne.layers import (InputLayer, BiasLayer, DimshuffleLayer, ReshapeLayer, ConcatLayer,
                            SliceLayer)


def build_model():
    net = {}
    net['input'] = InputLayer((None, 2, 4, 3))
    net['biased'] = BiasLayer(net['input'])
    net['cnhw'] = DimshuffleLayer(net['biased'], (1, 0, 2, 3))
    net['rows_c'] = DimshuffleLayer(ReshapeLayer(net['cnhw'], (2, -1)), (1, 0))
    net['rows_n'] = ReshapeLayer(DimshuffleLayer(net['biased'], (0, 2, 3, 1)), (-1, 2))
    net['rows'] = ConcatLayer([net['rows_c'], net['rows_n']], axis=0, name='rows')
    net['twice'] = ConcatLayer([net['cnhw'], net['cnhw']], axis=0, name='twice')
    net['first'] = SliceLayer(net['cnhw'], indices=slice(0, 1), axis=0, name='first')
    net['cut'] = SliceLayer(net['biased'], indices=slice(0, 1), axis=0, name='cut')
    return net['OUTPUT']
'''


@pytest.mark.parametrize("out", ["rows", "twice"])
def test_concat_on_axis_0_of_whole_tensors_matches_numpy(tmp_path, out):
    """ConcatLayer(axis=0) after a batch-moving dimshuffle / reshape converts (keras.ops on the
    whole tensors) and computes the naive numpy formula of the Lasagne definition."""
    r = _convert(tmp_path, CONCAT_AXIS0.replace("OUTPUT", out), seed=1, x_shape=(3, 2, 4, 3))
    (bias,) = r["values"]
    assert bias.shape == (2,)
    x = r["x"].astype(np.float64) + bias.astype(np.float64)[None, :, None, None]
    if out == "rows":
        a = x.transpose(1, 0, 2, 3).reshape(2, -1).T            # (N*H*W, C) channel-major rows
        b = x.transpose(0, 2, 3, 1).reshape(-1, 2)               # (N*H*W, C) pixel-major rows
        want = np.concatenate([a, b], axis=0)
    else:
        c = x.transpose(1, 0, 2, 3)
        want = np.concatenate([c, c], axis=0)                    # (2C, N, H, W)
    got = r["keras"][out]
    assert got.shape == want.shape and _rel(got, want) <= TOL
    assert _rel(r["ref"][out], want) <= TOL
    assert r["result"].passed and r["result"].layer(out).whole
    m = r["plan"].mapping(out)
    assert m.supported and any("whole tensor" in n for n in m.notes)
    if out == "rows":              # the saved model loads with plain Keras and computes the same
        import keras

        from migrator.core.compare.metrics import to_keras_layout
        path = str(tmp_path / "m.keras")
        r["model"].save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert _rel(np.asarray(loaded(to_keras_layout(r["x"]))), want) <= TOL


def test_axis_0_refusals_say_whether_axis_0_is_the_batch(tmp_path):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.mapping.planner import make_plan

    for name, samples in (("first", "the samples are on axis 1"), ("cut", None)):
        (tmp_path / name).mkdir()
        b, p, _ = M.write_model(tmp_path / name, CONCAT_AXIS0.replace("OUTPUT", name), "npz", seed=1)
        plan = make_plan(load_lasagne(b, p))
        err = {m.source: m.error for m in plan.unsupported}[name]
        if samples is None:
            assert err == "slicing the batch axis", err
        else:
            assert "axis 0" in err and samples in err and "not the batch axis" in err, err


def test_padding_of_any_rank_and_batch_ndim_matches_np_pad(tmp_path):
    """PadLayer on a rank-3 tensor (ZeroPadding1D), of the channels with a value, and of the
    batch axis itself (batch_ndim=0: the first axis is then not the batch) vs np.pad."""
    script = M.HEADER + '''
def build_model():
    net = {}
    net['input'] = InputLayer((None, 2, 7))
    net['p1'] = PadLayer(net['input'], width=[(1, 2)])
    net['p2'] = PadLayer(net['p1'], width=[1, (0, 3)], batch_ndim=1, val=0.25)
    net['p3'] = PadLayer(net['p2'], width=[(1, 0), 0, (2, 1)], batch_ndim=0, val=-1.)
    net['out'] = DenseLayer(net['p3'], 3, nonlinearity=None)
    return net
'''
    r = _convert(tmp_path, script, seed=4, x_shape=(2, 2, 7), output_layer="out")
    plan, x = r["plan"], r["x"]
    assert [s.class_name for s in plan.mapping("p1").layers] == ["ZeroPadding1D"]
    assert [s.config["op"] for s in plan.mapping("p2").layers] == ["Pad"]
    want = {"p1": np.pad(x, [(0, 0), (0, 0), (1, 2)])}
    want["p2"] = np.pad(want["p1"], [(0, 0), (1, 1), (0, 3)], constant_values=0.25)
    want["p3"] = np.pad(want["p2"], [(1, 0), (0, 0), (2, 1)], constant_values=-1.0)
    for name, w in want.items():
        for side in ("ref", "keras"):
            assert _rel(r[side][name], w) <= TOL, (side, name)
    assert r["keras"]["out"].shape == (3, 3)
    assert r["result"].passed
    assert {x.source for x in r["result"].layers if x.whole} == {"p3", "out"}


def test_reshape_that_cannot_be_one_reshape_is_refused_by_name(tmp_path):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.mapping.planner import make_plan

    script = M.HEADER + '''
def build_model():
    l = Conv2DLayer(InputLayer((None, 2, None, 4), name='x'), 2, 1, name='c')
    l = DimshuffleLayer(l, (1, 0, 2, 3), name='moved')
    return ReshapeLayer(l, ([0], [1], -1), name='flat')
'''
    b, p, _ = M.write_model(tmp_path, script, "npz", seed=1)
    plan = make_plan(load_lasagne(b, p))
    assert plan.mapping("moved").supported
    m = plan.mapping("flat")
    assert not m.supported and "more than one unknown size" in m.error, m.error


# --------------------------------------------------------------------------------------
# against the real Theano / Lasagne
# --------------------------------------------------------------------------------------
@pytest.mark.theano
@pytest.mark.slow
def test_batch_moving_layers_match_real_lasagne_01(py, tmp_path, record_proof):
    from migrator.core.importers.lasagne import describe_builder
    from tests.envs.theano_env import run_theano

    r = _convert(tmp_path, BATCH_MOVES_01, seed=5, x_shape=(2, 2, 6, 5), output_layer="prob")
    rec = describe_builder(r["builder"], output_layer="prob")
    real_desc = describe_builder(r["builder"], impl="real", python=py, timeout=300, output_layer="prob")
    assert [(L["name"], L["class"], L["output_shape"]) for L in rec["layers"]] == \
           [(L["name"], L["class"], L["output_shape"]) for L in real_desc["layers"]]
    req = {"builder": np.array(r["builder"]), "x": r["x"], "n_params": np.array(len(r["values"]))}
    req.update({f"param__{i}": v for i, v in enumerate(r["values"])})
    th = run_theano(py, REAL_FORWARD, req, timeout=600)
    names = [L["name"] for L in r["graph"].meta["lasagne_description"]["layers"]]
    real = {names[int(k.split("__")[1])]: v for k, v in th.items()}
    assert real["prob"].shape == (2 * 8 * 8, 9)
    _check(r, real, list(real), "real Lasagne 0.1")
    assert r["result"].passed
    record_proof(r["graph"], proofs.REAL_LASAGNE, list(real))


@pytest.mark.theano
@pytest.mark.slow
def test_batch_moving_layers_pass_the_legacy_runtime_comparison(py, tmp_path):
    """``migrator compare --runtime legacy``: the real Lasagne 0.1 run by the bridge, layer by
    layer; the outputs whose first axis is not the batch compared as whole tensors."""
    from pathlib import Path

    from migrator.core.compare.engine import run_comparison
    from tests.envs import theano_env as TE

    r = _convert(tmp_path, BATCH_MOVES_01, seed=5, x_shape=(2, 2, 6, 5), output_layer="prob")
    cmd = {"command": [py], "env": {"THEANO_FLAGS": TE.theano_env_vars(Path(py).parents[1])["THEANO_FLAGS"]}}
    res = run_comparison(r["graph"], r["plan"], r["model"], r["x"], runtime="legacy", runtime_settings=cmd)
    assert res.passed, [(x.source, x.status, x.note) for x in res.layers if x.status != "pass"]
    assert {x.source for x in res.layers if x.whole} == \
        {"dimshuffle", "reshapeSeg", "dimshuffle2", "softmax", "rows", "hwnc", "cols", "prob"}
    assert res.layer("prob").shape == (2 * 8 * 8, 9)


@pytest.mark.theano
@pytest.mark.slow
def test_unet_matches_theano(py, tmp_path, record_proof):
    from tests.envs.theano_env import run_theano

    r = _convert(tmp_path, unet_script(), seed=2, x_shape=(2, 1, 16, 16),
                 output_layer="output_flattened")
    g = r["graph"]
    req = M.theano_request(g, {"input": r["x"]}, r["ref"], tag="unet")
    th = run_theano(py, M.CATALOGUE_THEANO_SCRIPT, req, timeout=900)
    chain = {k[len("unet::chain__"):]: v for k, v in th.items() if k.startswith("unet::chain__")}
    names = [n.name for n in g.nodes if n.op != "Input"]
    assert set(names) <= set(chain), sorted(set(names) - set(chain))
    worst = _check(r, chain, names, "Theano (U-Net)")
    assert chain["output_flattened"].shape == (2 * 16 * 16, 2)
    assert r["result"].passed
    record_proof(g, proofs.THEANO_OPS, names)
    print(f"U-Net: {len(names)} layers, Keras worst max abs {worst:.2e}")


@pytest.mark.theano
@pytest.mark.slow
def test_c3d_matches_theano(py, tmp_path, record_proof):
    import json

    from tests.envs.theano_env import run_theano

    r = _convert(tmp_path, C3D_SCRIPT, seed=3, x_shape=(2, 3, 16, 16, 16), output_layer="prob",
                     fill=he_3d)
    g = r["graph"]
    req = {"x": r["x"], "layers": np.array(json.dumps(c3d_layers()))}
    req.update(_params_by_layer(g, r["values"]))
    real = run_theano(py, THEANO_3D, req, timeout=900)
    names = [n.name for n in g.nodes if n.op != "Input"]
    assert sorted(names) == sorted(real)
    worst = _check(r, real, names, "Theano (C3D)")
    assert 0.01 < float(real["prob"].max()) < 0.99       # an unsaturated softmax: it is checked too
    assert r["result"].passed
    record_proof(g, proofs.THEANO_OPS, names)
    print(f"C3D: {len(names)} layers, Keras worst max abs {worst:.2e}")


@pytest.mark.theano
@pytest.mark.slow
def test_3d_transposed_conv_and_upscale_match_theano(py, tmp_path, record_proof):
    import json

    from tests.envs.theano_env import run_theano

    r = _convert(tmp_path, THREE_D_SCRIPT, seed=7, x_shape=(2, 2, 3, 4, 5), output_layer="back")
    g = r["graph"]
    layers = [list(L) for L in THREE_D_LAYERS]
    for L in layers:
        if L[1] == "tconv3d":
            L[3] = dict(L[3], out_shape=[2] + list(g.node(L[0]).out_shape[1:]),
                        W_shape=list(g.node(L[0]).p("weight").shape))
    req = {"x": r["x"], "layers": np.array(json.dumps(layers))}
    req.update(_params_by_layer(g, r["values"]))
    real = run_theano(py, THEANO_3D, req, timeout=900)
    names = [n.name for n in g.nodes if n.op != "Input"]
    assert sorted(names) == sorted(real)
    _check(r, real, names, "Theano (3-D layers)")
    record_proof(g, proofs.THEANO_OPS, names)


# --------------------------------------------------------------------------------------
# optional: the real Lasagne master (not on PyPI) -- MIGRATOR_LASAGNE_MASTER=<a directory holding
# master's ``lasagne`` package>, run with the Theano environment's Theano
# --------------------------------------------------------------------------------------
MASTER_FORWARD = r'''
import sys, types, runpy
sys.path.insert(0, str(IN["master"]))
import theano, lasagne
from lasagne.layers import Conv3DLayer, MaxPool3DLayer
assert lasagne.__version__ != "0.1", lasagne.__version__
try:
    import lasagne.layers.dnn
except Exception:      # cuDNN classes need a GPU: master's CPU classes with the cuDNN defaults
    dnn = types.ModuleType("lasagne.layers.dnn")
    def Conv3DDNNLayer(*a, **k):
        k.setdefault("flip_filters", False)
        return Conv3DLayer(*a, **k)
    dnn.Conv3DDNNLayer = Conv3DDNNLayer
    dnn.MaxPool3DDNNLayer = MaxPool3DLayer
    sys.modules["lasagne.layers.dnn"] = dnn
    lasagne.layers.dnn = dnn
ns = runpy.run_path(str(IN["builder"]), run_name="__migrator_builder__")
out = ns["build_model"]()[str(IN["output"])]
layers = lasagne.layers.get_all_layers(out)
lasagne.layers.set_all_param_values(out, [IN["param__%d" % i] for i in range(int(IN["n_params"]))])
f = theano.function([layers[0].input_var], lasagne.layers.get_output(layers[1:], deterministic=True))
OUT["version"] = lasagne.__version__
for i, v in enumerate(f(IN["x"])):
    OUT["layer__%d" % (i + 1)] = v
'''


@pytest.mark.theano
@pytest.mark.slow
@pytest.mark.parametrize("model", ["unet", "c3d"])
def test_recipes_models_match_real_lasagne_master(py, tmp_path, model):
    import os

    from tests.envs.theano_env import run_theano

    master = os.environ.get("MIGRATOR_LASAGNE_MASTER")
    if not master or not os.path.isdir(os.path.join(master, "lasagne")):
        pytest.skip("MIGRATOR_LASAGNE_MASTER (a directory holding Lasagne master's lasagne package) "
                    "is not set: PyPI has only Lasagne 0.1")
    if model == "unet":
        r = _convert(tmp_path, unet_script(), seed=2, x_shape=(2, 1, 16, 16),
                     output_layer="output_flattened")
        out = "output_flattened"
    else:
        r = _convert(tmp_path, C3D_SCRIPT, seed=3, x_shape=(2, 3, 16, 16, 16), output_layer="prob",
                     fill=he_3d)
        out = "prob"
    req = {"builder": np.array(r["builder"]), "x": r["x"], "n_params": np.array(len(r["values"])),
           "master": np.array(master), "output": np.array(out)}
    req.update({f"param__{i}": v for i, v in enumerate(r["values"])})
    th = run_theano(py, MASTER_FORWARD, req, timeout=900)
    names = [L["name"] for L in r["graph"].meta["lasagne_description"]["layers"]]
    real = {names[int(k.split("__")[1])]: v for k, v in th.items() if k.startswith("layer__")}
    assert len(real) == len(names) - 1
    worst = _check(r, real, list(real), f"real Lasagne {th['version']} ({model})")
    print(f"{model}: {len(real)} layers vs real Lasagne master, Keras worst max abs {worst:.2e}")
