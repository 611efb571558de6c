"""The numpy reference kernels against the real Theano 1.0.5 (+ Lasagne 0.1) where the
test venv of ``tests/envs/theano_env.py`` exists: pooling in every Lasagne mode
(ignore_border True/False, max / average_inc_pad / average_exc_pad, with padding),
convolution with filter_flip True/False (+ stride, padding, dilation) and Lasagne's LRN.

Measured facts this pins down: Theano's max pooling ignores the padding; average_inc_pad
divides by the full window when ignore_border=True; with ignore_border=False the border
windows are clipped to the input and both average modes divide by the clipped size.
"""
from __future__ import annotations

import ast

import numpy as np
import pytest

from migrator.core.ir import Node
from migrator.core.reference.kernels import KERNELS, conv2d, pool2d

pytestmark = pytest.mark.theano

SCRIPT = r"""
import theano, theano.tensor as T
from theano.tensor.signal.pool import pool_2d
from theano.tensor.nnet import conv2d
x, w = IN['x'], IN['w']
X, W = T.tensor4(), T.tensor4()
for key in IN['pool_keys']:
    _, ib, mode, ws, st, pad = str(key).split('|')
    ib, ws, st, pad = ib == 'True', eval(ws), eval(st), eval(pad)
    f = theano.function([X], pool_2d(X, ws=ws, ignore_border=ib, stride=st, pad=pad, mode=mode))
    OUT[str(key)] = f(x)
for key in IN['conv_keys']:
    _, flip, bm, sub, dil = str(key).split('|')
    f = theano.function([X, W], conv2d(X, W, border_mode=eval(bm), subsample=eval(sub),
                                       filter_flip=flip == 'True', filter_dilation=eval(dil)))
    OUT[str(key)] = f(x, w)
import lasagne
from lasagne.layers import InputLayer
from lasagne.layers.normalization import LocalResponseNormalization2DLayer as LRN
l = LRN(InputLayer((None, 3, 7, 9)), alpha=0.3, k=2.0, beta=0.6, n=3)
OUT['lrn'] = theano.function([X], lasagne.layers.get_output(l, X))(x * 3)
"""

POOL_CASES = [((3, 3), (2, 2), (1, 1)), ((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (0, 0)),
              ((3, 2), (1, 3), (0, 0)), ((2, 3), (3, 1), (1, 1)), ((3, 3), (1, 1), (2, 2))]
CONV_CASES = [((1, 1), (1, 1), (1, 1)), ((1, 0), (2, 1), (1, 1)), ((2, 1), (1, 1), (2, 2))]


@pytest.fixture(scope="module")
def theano_out():
    from tests.envs import theano_env
    if not theano_env._ready(theano_env.ENV_DIR):
        pytest.skip("no Theano venv (build it with `python -m tests.envs.theano_env`)")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    pool_keys = [f"pool|{ib}|{mode}|{ws}|{st}|{pad}"
                 for ib in (True, False) for mode in ("max", "average_inc_pad", "average_exc_pad")
                 for ws, st, pad in POOL_CASES if ib or pad == (0, 0)]
    conv_keys = [f"conv|{flip}|{bm}|{sub}|{dil}" for flip in (True, False) for bm, sub, dil in CONV_CASES]
    out = theano_env.run_theano(str(theano_env.env_python()), SCRIPT,
                                {"x": x, "w": w, "pool_keys": np.array(pool_keys),
                                 "conv_keys": np.array(conv_keys)})
    return x, w, out


def test_pooling_vs_theano(theano_out):
    x, _, out = theano_out
    keys = [k for k in out if k.startswith("pool|")]
    assert len(keys) == 27
    for key in keys:
        _, ib, mode, ws, st, pad = key.split("|")
        div = {"max": "caffe", "average_inc_pad": "inc_pad", "average_exc_pad": "exc_pad"}[mode]
        got = pool2d(x, "max" if mode == "max" else "avg", ast.literal_eval(ws), ast.literal_eval(st),
                     ast.literal_eval(pad), "floor" if ib == "True" else "lasagne_ceil", div)
        assert got.shape == out[key].shape, key
        np.testing.assert_allclose(got, out[key], rtol=1e-6, atol=1e-6, err_msg=key)


def test_conv_flip_vs_theano(theano_out):
    x, w, out = theano_out
    for key in [k for k in out if k.startswith("conv|")]:
        _, flip, bm, sub, dil = key.split("|")
        got = conv2d(x, w, ast.literal_eval(sub), ast.literal_eval(bm), ast.literal_eval(dil), 1,
                     flip == "True")
        np.testing.assert_allclose(got, out[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_lasagne_lrn_vs_theano(theano_out):
    x, _, out = theano_out
    node = Node("lrn", "LRN", attrs={"region": "across", "size": 3, "coeff": 0.3, "beta": 0.6, "k": 2.0})
    np.testing.assert_allclose(KERNELS["LRN"](node, [x * 3])[0], out["lrn"], rtol=1e-5, atol=1e-6)
