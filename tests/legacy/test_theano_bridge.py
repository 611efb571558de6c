"""Real Theano 1.0.5 + PyPI Lasagne 0.1 through the legacy bridge.

Lasagne 0.1 has no BatchNormLayer and no flip_filters: the builder scripts below define the
preliminary (2015 gist) batch normalisation on Lasagne's Layer base, as users did then, and use
Conv2DLayer's true convolution.  The same script is read by Migrator's recorder (importer) and run
by real Lasagne in the bridge; the real layer list must agree with the recording, and the real
outputs must match Migrator's numpy reference and the converted Keras model layer by layer at the
default tolerance.  Skipped (with the reason) where the Theano venv is absent.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.reference.runtimes import get_runtime
from tests import proofs
from tests.legacy import within_default_tolerance

pytestmark = [pytest.mark.theano, pytest.mark.slow]

HEADER = '''
import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, DenseLayer, Pool2DLayer, MaxPool2DLayer,
                            GlobalPoolLayer, ElemwiseSumLayer, ConcatLayer, DropoutLayer,
                            LocalResponseNormalization2DLayer)
from lasagne.nonlinearities import softmax, LeakyRectify
'''

GIST = '''
class BatchNormLayer(lasagne.layers.Layer):
    """The preliminary batch normalisation (user code on Lasagne's Layer base)."""

    def __init__(self, incoming, axes=None, epsilon=0.01, alpha=0.5, nonlinearity=None, **kwargs):
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
        self.mean = self.add_param(lasagne.init.Constant(0), shape, 'mean', trainable=False,
                                   regularizable=False)
        self.std = self.add_param(lasagne.init.Constant(1), shape, 'std', trainable=False,
                                  regularizable=False)
        self.beta = self.add_param(lasagne.init.Constant(0), shape, 'beta', trainable=True,
                                   regularizable=True)
        self.gamma = self.add_param(lasagne.init.Constant(1), shape, 'gamma', trainable=True,
                                    regularizable=False)

    def get_output_for(self, input, deterministic=False, **kwargs):
        mean = T.addbroadcast(self.mean, *self.axes)
        std = T.addbroadcast(self.std, *self.axes)
        beta = T.addbroadcast(self.beta, *self.axes)
        gamma = T.addbroadcast(self.gamma, *self.axes)
        return self.nonlinearity((input - mean) * (gamma / (std + self.epsilon)) + beta)


def batch_norm(layer):
    nonlinearity = getattr(layer, 'nonlinearity', None)
    if nonlinearity is not None:
        layer.nonlinearity = lasagne.nonlinearities.identity
    if getattr(layer, 'b', None) is not None:
        del layer.params[layer.b]
        layer.b = None
    return BatchNormLayer(layer, nonlinearity=nonlinearity)
'''

# named, dict-keyed and unnamed layers (exercising the shared naming rules); gist BN after a conv
# and after a dense layer; ceil max pooling; average_exc_pad with pad; LRN; weighted sum; concat
NET = HEADER + GIST + '''

def build_model():
    net = {}
    net['input'] = InputLayer((None, 3, 15, 13))
    net['conv1'] = batch_norm(Conv2DLayer(net['input'], 8, 3, pad=1, name='conv1'))
    net['pool1'] = MaxPool2DLayer(net['conv1'], 3, stride=2, ignore_border=False)
    c2 = Conv2DLayer(net['pool1'], 8, (3, 3), pad=1, nonlinearity=LeakyRectify(0.1))
    c3 = Conv2DLayer(net['pool1'], 8, 1, nonlinearity=None)
    s = ElemwiseSumLayer([c2, c3], coeffs=[1.0, -0.5])
    avg = Pool2DLayer(s, 3, stride=1, pad=(1, 1), mode='average_exc_pad')
    lrn = LocalResponseNormalization2DLayer(avg, alpha=1e-2, k=2, beta=0.75, n=3)
    cat = ConcatLayer([lrn, c3])
    drop = DropoutLayer(cat, p=0.5)
    gp = GlobalPoolLayer(drop)
    fc = batch_norm(DenseLayer(gp, 10, name='fc'))
    net['prob'] = DenseLayer(fc, 5, nonlinearity=softmax, name='prob')
    return net
'''

# builds differently under real Lasagne than under Migrator's recorder (detected by module path)
DIVERGING = HEADER + '''
REAL = 'migrator' not in lasagne.__file__


def build_model():
    l = InputLayer((None, 4), name='in')
    l = DenseLayer(l, 3, name='fc')
    if REAL:
        l = DropoutLayer(l, name='only_in_real')
    return DenseLayer(l, 2, nonlinearity=softmax, name='out')
'''

RAISING = HEADER + '''
def build_model():
    if 'migrator' not in lasagne.__file__:
        raise RuntimeError('this builder needs a GPU')
    return DenseLayer(InputLayer((None, 4), name='in'), 2, name='out')
'''


@pytest.fixture(scope="module")
def theano_cmd():
    from tests.envs import theano_env
    if not theano_env._ready(theano_env.ENV_DIR):
        pytest.skip(theano_env.last_reason or "no Theano venv (build it with `python -m tests.setup_envs`)")
    py = str(theano_env.env_python())
    # floatX=float32 and the compile dir as the set-up chose them (a user's .theanorc does this)
    return {"command": [py], "env": {"THEANO_FLAGS": theano_env.theano_env_vars()["THEANO_FLAGS"]}}


def _model(tmp_path, script, seed=0):
    from migrator.core.importers.lasagne import load_lasagne
    from migrator.testing.lasagne_models import make_param_values, write_params, write_script
    b = write_script(tmp_path, script)
    values = make_param_values(b, seed=seed)
    p = write_params(str(tmp_path / "params.pkl"), values, "pkl_list")
    return b, p, load_lasagne(b, p)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("lasagne_net"), NET)


def test_real_lasagne_matches_numpy_reference(net, theano_cmd, record_proof):
    from migrator.core.reference import numpy_ref
    g = net[2]
    x = np.random.default_rng(3).standard_normal((2, 3, 15, 13)).astype(np.float32)
    rt = get_runtime("legacy", **theano_cmd)
    got = list(rt.run(g, x))
    d = rt.describe()
    assert d["framework"] == "lasagne"
    assert d["versions"]["theano"] == "1.0.5" and d["versions"]["lasagne"] == "0.1"
    # the real layer list agrees with Migrator's recording: names, classes, shapes, params
    assert rt.warnings == [], rt.warnings
    assert [ly["name"] for ly in rt.layers] == [n.name for n in g.nodes]
    assert [n for n, _ in got] == [n.name for n in g.nodes]
    got = dict(got)
    bad = []
    for name, ref in numpy_ref.run(g, x):
        ok, err, bound = within_default_tolerance(got[name][0], ref[0])
        if not ok:
            bad.append((name, err, bound))
    assert not bad, bad
    # the gist BN really normalises with the stored statistics (not an identity)
    assert not np.allclose(got["conv1"][0], got["conv1_2"][0])
    record_proof(g, proofs.REAL_LASAGNE, list(got))


def test_real_lasagne_matches_converted_keras(net, theano_cmd, record_proof):
    from migrator.core import flow
    b, p, _ = net
    g = flow.open_model([b, p])
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    x = np.random.default_rng(4).standard_normal((2, 3, 15, 13)).astype(np.float32)
    res = flow.compare(g, plan, model, x, runtime="legacy", runtime_settings=theano_cmd)
    assert res.runtime["versions"]["lasagne"] == "0.1"
    failed = {lr.source: (lr.max_abs, lr.note) for lr in res.layers if lr.status == "fail"}
    assert not failed, failed
    assert all(lr.status in ("pass", "fused") for lr in res.layers), [(lr.source, lr.status) for lr in res.layers]
    record_proof(g, proofs.REAL_LASAGNE, proofs.passed(res))


def test_recording_differs_from_real_lasagne(tmp_path, theano_cmd):
    g = _model(tmp_path, DIVERGING)[2]
    rt = get_runtime("legacy", **theano_cmd)
    got = dict(rt.run(g, np.ones((1, 4), np.float32)))
    assert set(got) == {"in", "fc", "out"}
    assert "only_in_real" in [ly["name"] for ly in rt.layers]
    assert any("did not read: only_in_real" in w for w in rt.warnings), rt.warnings


def test_builder_failing_in_the_real_environment(tmp_path, theano_cmd):
    g = _model(tmp_path, RAISING)[2]
    with pytest.raises(MigratorError) as ei:
        list(get_runtime("legacy", **theano_cmd).run(g, np.ones((1, 4), np.float32)))
    assert "this builder needs a GPU" in str(ei.value) and "build_model() failed" in str(ei.value)


def test_param_count_mismatch_is_an_error(net, theano_cmd):
    import copy
    g = copy.copy(net[2])
    g.meta = dict(g.meta, lasagne_param_values=list(g.meta["lasagne_param_values"])[:-1])
    with pytest.raises(MigratorError, match="Migrator sent .* parameter arrays, the real network has"):
        list(get_runtime("legacy", **theano_cmd).run(g, np.zeros((1, 3, 15, 13), np.float32)))
