"""Batch-norm training updates (migrator.core.mapping.bn_training) against update rules
written out here, and the mapping rows / report section that show them.

The replays of the real frameworks' updates are checked against real Lasagne and real Caffe in
tests/lasagne/test_bn_training.py and tests/legacy/test_caffe_bn_training.py."""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core.ir import Graph, Node, Param
from migrator.core.mapping.bn_training import BatchStats, SourceState, update_drift
from migrator.core.mapping.overrides import Overrides
from migrator.core.mapping.planner import make_plan

C = 5
RNG = np.random.default_rng(7)


def _batches(n, count=64, shift=0.0):
    return [BatchStats(RNG.normal(size=C) + shift, RNG.uniform(0.3, 3.0, C), count)
            for _ in range(n)]


def _naive(form, a, b, sf, rate, eps, km, kv, mom, batches):
    """The updates, one channel at a time, as each framework's source code writes them."""
    a, b, km, kv = (list(map(float, v)) for v in (a, b, km, kv))
    for bs in batches:
        if form == "caffe":
            sf = rate * sf + 1
        for c in range(C):
            m, v = float(bs.mean[c]), float(bs.var[c])
            if form == "lasagne":
                a[c] = (1 - rate) * a[c] + rate * m
                b[c] = (1 - rate) * b[c] + rate * (1 / (v + eps) ** 0.5)
            else:
                a[c] = rate * a[c] + m
                b[c] = rate * b[c] + v * bs.count / (bs.count - 1)
            km[c] = mom * km[c] + (1 - mom) * m
            kv[c] = mom * kv[c] + (1 - mom) * v
    if form == "lasagne":
        mean, den = a, [1 / x for x in b]
    else:
        mean, den = [x / sf for x in a], [(x / sf + eps) ** 0.5 for x in b]
    return (max(abs(km[c] - mean[c]) / den[c] for c in range(C)),
            max(abs((kv[c] + eps) ** 0.5 / den[c] - 1) for c in range(C)))


@pytest.mark.parametrize("momentum", [0.9, 0.99])
def test_lasagne_drift_matches_the_update_rules(momentum):
    mean, inv = RNG.normal(size=C), RNG.uniform(0.5, 2, C)
    eps, alpha = 1e-4, 0.1
    batches = _batches(30, shift=0.5)
    pts = update_drift(SourceState("lasagne", mean, inv, alpha, eps), mean, 1 / inv ** 2 - eps,
                       momentum, eps, batches, (1, 7, 30))
    for p in pts:
        want = _naive("lasagne", mean, inv, 1, alpha, eps, mean, 1 / inv ** 2 - eps, momentum,
                      batches[:p.step])
        assert (p.mean_gap, p.denominator_gap) == pytest.approx(want, rel=1e-9, abs=1e-12)
    if momentum == 0.9:          # = 1 - alpha: the means follow the same recursion
        assert max(p.mean_gap for p in pts) < 1e-12
        assert pts[-1].denominator_gap > 1e-3     # ... the denominators do not
    else:
        assert pts[-1].mean_gap > 0.05


def test_caffe_drift_matches_the_update_rules():
    maf, eps, sf = 0.95, 1e-5, 3.0
    b0, b1 = RNG.normal(size=C) * sf, RNG.uniform(0.5, 2, C) * sf
    batches = _batches(12, count=10)
    pts = update_drift(SourceState("caffe", b0, b1, maf, eps, sf=sf), b0 / sf, b1 / sf, maf, eps,
                       batches, (1, 12))
    for p in pts:
        want = _naive("caffe", b0, b1, sf, maf, eps, b0 / sf, b1 / sf, maf, batches[:p.step])
        assert (p.mean_gap, p.denominator_gap) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_caffe_converged_scale_factor_leaves_only_the_unbiased_variance():
    maf, eps, m = 0.9, 1e-5, 101
    sf = 1 / (1 - maf)
    mean, var = np.zeros(C), np.ones(C)
    same = [BatchStats(mean, var, m)] * 200
    p = update_drift(SourceState("caffe", mean * sf, var * sf, maf, eps, sf=sf), mean, var, maf,
                     eps, same, (200,))[0]
    assert p.mean_gap < 1e-12
    # Caffe converges to var * m/(m-1), Keras stays at var
    want = abs(((1 + eps) / (m / (m - 1) + eps)) ** 0.5 - 1)
    assert p.denominator_gap == pytest.approx(want, rel=1e-6)


def _lasagne_graph():
    x = Node("input", "Input", attrs={"shape": (None, C, 6, 6)})
    inv = RNG.uniform(0.5, 2, C)
    bn = Node("bn", "BatchNorm", ["input"],
              attrs={"form": "lasagne", "axis": 1, "epsilon": 1e-4, "alpha": 0.2, "axes": (0, 2, 3)},
              params={"mean": Param("mean", RNG.normal(size=C).astype(np.float32), "C"),
                      "inv_std": Param("inv_std", inv.astype(np.float32), "C")})
    g = Graph(framework="lasagne", nodes=[x, bn], name="t")
    g.validate()
    g.infer_shapes()
    return g


def test_rows_show_the_updates_and_the_momentum_override():
    from migrator.core.report import build_report, render_markdown

    g = _lasagne_graph()
    rows = {r.key: r for r in next(m for m in make_plan(g).mappings if m.source == "bn").rows}
    assert "inv_std <- (1-alpha)*inv_std" in rows["training_update"].formula
    assert "moving_variance <- momentum*moving_variance" in rows["training_update"].formula
    assert rows["training_update"].value == "momentum 0.8"
    assert "N=1: mean 0," in rows["update_drift"].value
    ov = Overrides.from_dict({"version": 1, "layers": {"bn": {"momentum": 0.99}}})
    plan = make_plan(g, ov)
    m = next(m for m in plan.mappings if m.source == "bn")
    r2 = {r.key: r for r in m.rows}
    assert r2["update_drift"].value != rows["update_drift"].value
    assert "N=1: mean 0," not in r2["update_drift"].value
    assert any("differs from the source's rate (0.8)" in c for c in r2["training_update"].caveats)
    md = render_markdown(build_report(g, plan, None, overrides=ov))
    sec = md[md.index("## Fine-tuning: batch-norm moving statistics"):md.index("## Mapping decisions")]
    assert "| bn |" in sec and "0.99 (override)" in sec and r2["update_drift"].value in sec
