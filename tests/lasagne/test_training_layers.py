"""Noise layers of a converted Lasagne model act in training only, as in Lasagne:
``DropoutLayer(p)`` zeroes with probability p and rescales by 1/(1-p), ``GaussianNoiseLayer(sigma)``
adds N(0, sigma^2); both are the identity with ``deterministic=True`` (written out here)."""
from __future__ import annotations

import numpy as np

SCRIPT = '''
from lasagne.layers import InputLayer, DenseLayer, DropoutLayer, GaussianNoiseLayer


def build_model():
    l = InputLayer((None, 3, 20, 20), name='in')
    l = GaussianNoiseLayer(l, sigma=0.3, name='noise')
    l = DropoutLayer(l, p=0.25, name='drop')
    l = GaussianNoiseLayer(l, sigma=0, name='no_noise')
    return DenseLayer(l, 2, name='out')
'''


def test_dropout_and_gaussian_noise_are_active_in_training_only(tmp_path):
    import keras

    from migrator.core import flow
    from migrator.testing import lasagne_models as M

    b, p, _ = M.write_model(tmp_path, SCRIPT, "pkl_list", seed=1)
    g = flow.open_model([b, p])
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    by = {m.source: m for m in plan.mappings}
    noise = model.get_layer(by["noise"].layers[0].name)
    drop = model.get_layer(by["drop"].layers[0].name)
    assert isinstance(noise, keras.layers.GaussianNoise) and noise.stddev == 0.3
    assert isinstance(drop, keras.layers.Dropout) and drop.rate == 0.25
    assert not by["no_noise"].layers                      # sigma = 0: nothing to add
    x = np.ones((16, 20, 20, 3), np.float32)
    for layer in (noise, drop):
        assert np.array_equal(np.asarray(layer(x, training=False)), x)
    n = np.asarray(noise(x, training=True)) - x
    assert abs(float(n.std()) - 0.3) < 0.01 and abs(float(n.mean())) < 0.01
    d = np.asarray(drop(x, training=True))
    assert abs(float((d == 0).mean()) - 0.25) < 0.02 and np.allclose(d[d != 0], 1 / 0.75)
    # the whole model: deterministic at inference, noisy in training
    xs = np.random.default_rng(0).normal(size=(4, 20, 20, 3)).astype(np.float32)
    assert np.array_equal(np.asarray(model(xs, training=False)), np.asarray(model(xs, training=False)))
    assert not np.allclose(np.asarray(model(xs, training=True)), np.asarray(model(xs, training=False)))
