"""The Keras model Migrator builds from a Lasagne network vs naive loops written from Lasagne's
definitions (tests/core/naive_ops.py, float64) -- no Theano needed, nothing from Migrator's own
reference on the expected side.

Two facts that only the real-Theano tier used to check:

* LocalResponseNormalization2DLayer's ``alpha`` multiplies the sum of squares itself
  (``x / (k + alpha * sum_n x^2)^beta``): Caffe's alpha is divided by n, Lasagne's is not;
* a DenseLayer on a 3-D (C, H, W) input flattens in C order over (C, H, W): in channels-last
  Keras the kernel rows must be permuted (or a Permute put before Flatten).

The parameter values are random; the input shape has C, H and W all different so that a
wrong flatten order cannot be hidden by symmetry.  Tolerance: max |err| <= 1e-5 + 1e-4 * max|ref|.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.testing import lasagne_models as M
from tests.core import naive_ops as N
from tests.lasagne import keras_outputs_by_source

SCRIPT = M.HEADER + '''
def build_model():
    l = InputLayer((None, 3, 7, 5), name='x')
    c = Conv2DLayer(l, 4, 3, pad='same', name='conv')               # flip_filters=True, rectify
    n = LocalResponseNormalization2DLayer(c, alpha=0.4, k=1.5, beta=0.75, n=3, name='lrn')
    d = DenseLayer(n, 6, nonlinearity=None, name='dense')           # on a (4, 7, 5) input
    return NonlinearityLayer(d, tanh, name='out')
'''

SCRIPT_DEFAULT_LRN = M.HEADER + '''
def build_model():
    l = InputLayer((None, 6, 4, 3), name='x')
    n = LocalResponseNormalization2DLayer(l, name='lrn')            # alpha=1e-4, k=2, beta=0.75, n=5
    return DenseLayer(n, 5, nonlinearity=None, name='dense')
'''


def _tol(ref) -> float:
    return 1e-5 + 1e-4 * float(np.abs(ref).max())


def _convert(tmp_path, script, x_scale=1.0):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan

    b, p, values = M.write_model(tmp_path, script, "npz", seed=3)
    g = load_lasagne(b, p)
    inp = g.input_nodes[0]
    x = (np.random.default_rng(5).normal(size=(2,) + inp.out_shape[1:]) * x_scale).astype(np.float32)
    plan = make_plan(g)
    assert all(m.supported for m in plan.mappings), [(m.source, m.error) for m in plan.mappings]
    return plan, build_keras(plan), x, values


def _check(naive: dict, plan, model, x):
    keras_out = keras_outputs_by_source(model, plan, x, {"x": x, **naive})
    for name, ref in naive.items():
        got = keras_out[name]
        assert got.shape == ref.shape, (name, got.shape, ref.shape)
        err = float(np.abs(got.astype(np.float64) - ref).max())
        assert err <= _tol(ref), f"layer {name}: Keras vs naive Lasagne max err {err:.3g} > {_tol(ref):.3g}"
    # and the model's own output, as a user calls it (channels-last input)
    y = np.asarray(model(np.moveaxis(x, 1, -1)))
    last = list(naive)[-1]
    assert float(np.abs(y - naive[last]).max()) <= _tol(naive[last])


def test_conv_lrn_dense_on_3d_input_against_naive(tmp_path):
    plan, model, x, (W_c, b_c, W_d, b_d) = _convert(tmp_path, SCRIPT)
    assert W_d.shape == (4 * 7 * 5, 6)
    conv = N.lasagne_nonlin(N.conv2d(x, W_c, b_c, pad=(1, 1), true_conv=True), "rectify")
    lrn = N.lasagne_lrn(conv, alpha=0.4, k=1.5, beta=0.75, n=3)
    dense = N.lasagne_dense(lrn, W_d, b_d)
    naive = {"conv": conv, "lrn": lrn, "dense": dense, "out": np.tanh(dense)}
    # the LRN term matters here: alpha/n instead of alpha would move the output by far more than
    # the tolerance (a wrong flatten order, too: checked by the permuted-rows control below)
    wrong_alpha = N.lasagne_lrn(conv, alpha=0.4 / 3, k=1.5, beta=0.75, n=3)
    assert np.abs(wrong_alpha - lrn).max() > 100 * _tol(lrn)
    hwc_rows = np.arange(4 * 7 * 5).reshape(4, 7, 5).transpose(1, 2, 0).reshape(-1)
    unpermuted = lrn.transpose(0, 2, 3, 1).reshape(2, -1) @ W_d.astype(np.float64) + b_d
    assert np.abs(unpermuted - dense).max() > 100 * _tol(dense)
    assert np.allclose(lrn.reshape(2, -1)[:, hwc_rows], lrn.transpose(0, 2, 3, 1).reshape(2, -1))
    _check(naive, plan, model, x)


def test_default_lrn_then_dense_against_naive(tmp_path):
    # Lasagne's defaults; inputs large enough that the alpha term is well above the tolerance
    plan, model, x, (W_d, b_d) = _convert(tmp_path, SCRIPT_DEFAULT_LRN, x_scale=30.0)
    lrn = N.lasagne_lrn(x, alpha=1e-4, k=2.0, beta=0.75, n=5)
    assert np.abs(N.lasagne_lrn(x, alpha=1e-4 / 5) - lrn).max() > 100 * _tol(lrn)
    _check({"lrn": lrn, "dense": N.lasagne_dense(lrn, W_d, b_d)}, plan, model, x)


@pytest.mark.parametrize("permute_rows", [True, False])
def test_dense_after_conv_both_layouts_against_naive(tmp_path, permute_rows):
    """Both ways of honouring the (C, H, W) order (rows permuted / Permute before Flatten)."""
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.overrides import Overrides
    from migrator.core.mapping.planner import make_plan

    script = M.HEADER + '''
def build_model():
    l = InputLayer((None, 2, 3, 4), name='x')
    c = Conv2DLayer(l, 3, (2, 3), flip_filters=False, nonlinearity=None, name='conv')
    return DenseLayer(c, 4, nonlinearity=None, name='dense')       # on (3, 2, 2)
'''
    b, p, (W_c, b_c, W_d, b_d) = M.write_model(tmp_path, script, "npz", seed=8)
    g = load_lasagne(b, p)
    ov = None if permute_rows else Overrides.from_dict({"version": 1, "kinds": {"Dense": {"permute_rows": False}}})
    plan = make_plan(g, ov)
    classes = [s.class_name for s in plan.mapping("dense").layers]
    assert classes == (["Flatten", "Dense"] if permute_rows else ["Permute", "Flatten", "Dense"]), classes
    model = build_keras(plan)
    x = np.random.default_rng(2).normal(size=(3, 2, 3, 4)).astype(np.float32)
    conv = N.conv2d(x, W_c, b_c)
    _check({"conv": conv, "dense": N.lasagne_dense(conv, W_d, b_d)}, plan, model, x)


@pytest.mark.parametrize("shape", [(3, 7), (2, 3, 4, 5)], ids=["rank3", "rank5"])
def test_dense_on_rank3_and_rank5_inputs_against_naive(tmp_path, shape):
    """DenseLayer straight on a (C, L) or a (C, D, H, W) input: Keras holds it channels-last, so
    the kernel rows must follow Lasagne's C-order flatten over the source axes -- removing that
    permutation must fail here, not only in the real-framework tiers."""
    script = M.HEADER + f'''
def build_model():
    l = InputLayer((None,) + {tuple(shape)!r}, name='x')
    return DenseLayer(l, 4, nonlinearity=None, name='dense')
'''
    plan, model, x, values = _convert(tmp_path, script)
    W_d, b_d = values
    naive = N.lasagne_dense(x, W_d, b_d)
    _check({"dense": naive}, plan, model, x)
    # the check can fail: the same weights with the rows in channels-last flatten order are wrong
    xt = np.moveaxis(x.astype(np.float64), 1, -1).reshape(x.shape[0], -1)
    assert np.abs(xt @ W_d + b_d - naive).max() > 100 * _tol(naive)
