"""GPU readiness (issue 12.2): TF32 is off for verification, the device is in the result, and
a batched comparison on the GPU gives the verdict the CPU gives.  The GPU tests skip without
a GPU; benchmarks/gpu_check.sh runs them on a GPU machine."""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core import flow
from migrator.core.compare.engine import device_description, strict_float32
from migrator.core.inputs import InputSpec
from tests.core.test_inputs import small_net


def _gpus():
    import tensorflow as tf
    return tf.config.list_physical_devices("GPU")


def test_tf32_is_turned_off_for_verification():
    import tensorflow as tf
    assert strict_float32()
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    d = device_description()
    assert d.startswith("GPU") == bool(_gpus())
    if _gpus():
        assert "TF32 off" in d


@pytest.mark.skipif(not _gpus(), reason="no GPU visible to TensorFlow")
def test_batched_set_on_the_gpu_matches_the_reference(tmp_path):
    g = flow.open_model(small_net(str(tmp_path), hw=(64, 64)))
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    a = np.random.default_rng(0).uniform(-120, 135, (64, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", a)
    res = flow.compare_set(g, plan, model, InputSpec(kind="arrays", path=str(tmp_path / "x.npy"),
                                                         batch_size=32))
    assert res.passed and res.n_samples == 64 and "GPU" in res.device and "TF32 off" in res.device
    assert res.topk["top1_agreement"] == 1.0
    # TF32 would give ~1e-3 relative error on the convolution and the dense layer
    assert max(r.max_rel for r in res.compared) < 1e-4


@pytest.mark.skipif(not _gpus(), reason="no GPU visible to TensorFlow")
def test_deep_net_on_the_gpu_passes_and_a_defect_still_fails(tmp_path):
    from migrator.core.mapping.overrides import Overrides
    from tests.core.test_verdict import image_like, resnet50
    files = resnet50(str(tmp_path))
    g = flow.open_model(files)
    x = np.concatenate([image_like(s) for s in range(8)])
    for ov, want in ((None, True),
                     (Overrides.from_dict({"version": 1, "layers": {"res3b_branch2b": {"flip": True}}}), False)):
        plan = flow.plan_model(g, ov)
        res = flow.compare(g, plan, flow.build_model(plan), x)
        assert res.passed is want, [(r.source, r.max_rel, r.basis) for r in res.layers if r.status == "fail"][:3]
        if not want:
            assert res.first_divergent.source == "res3b_branch2b"
