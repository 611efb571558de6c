"""Mapping rules of the norm family: ``BatchNorm`` (Caffe / Lasagne / 2015 gist), ``Scale``,
``Bias``, ``LRN``, ``Normalize``, ``MVN``, ``Standardize``.

Keras ``BatchNormalization`` computes at inference

    y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta

Every source normaliser is reproduced by choosing ``moving_variance + epsilon`` equal to
the source's denominator squared (see :mod:`migrator.core.mapping.transforms`):

=============  ===============  ====================================  =============
source         moving_mean      moving_variance (eps_k = Keras eps)   momentum
=============  ===============  ====================================  =============
Caffe          blob0 * s        blob1 * s (+ eps - eps_k)             maf
Lasagne        mean             1/inv_std**2 - eps_k                  1 - alpha
gist           mean             (std + eps)**2 - eps_k                1 - alpha
=============  ===============  ====================================  =============

with ``s = 0 if blob2 == 0 else 1/blob2``.  A Caffe ``BatchNorm`` followed by its
``Scale`` (and optionally a ``Bias``) becomes ONE ``BatchNormalization`` by default
(``fuse_scale``); otherwise the ``Scale``/``Bias`` become a ``ChannelAffine``; a ``Scale`` /
``Bias`` whose operand is a second bottom is broadcast and multiplied / added.

Nothing is clamped: negative or non-finite statistics are reported as warnings on the
row that carries them.

* LRN: the custom LRN layer (plain expression); Normalize (SSD): ``UnitNormalization`` then
  a 1x1 ``DepthwiseConv2D`` holding the scale (Keras computes ``x * min(rsqrt(sum x^2),
  1e12)`` where the fork computes ``x / sqrt(sum x^2 + eps)``: the same up to a relative
  ``eps / (2 sum x^2)``; a larger eps than 1e-6 is refused).
* MVN: mean subtraction = x - GlobalAveragePooling(keepdims); variance normalisation =
  LayerNormalization(epsilon = eps^2) (Caffe divides by sqrt(var) + eps: the two agree to
  eps / std relative, exactly at var = 0).
* Standardize (Lasagne StandardizationLayer): ``LayerNormalization(axes, epsilon,
  center=False, scale=False)``, Lasagne's formula exactly.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ...ir import Node
from .. import bn_training as BT
from .. import transforms as T
from ..plan import KerasLayerSpec, NodeMapping, ParamRow
from ..registry import MapContext, Option, Rule, keras_layout, rank_of, register, to_keras_axis
from .common import (
    F32,
    Chain,
    act_weights,
    activation_layer,
    chain_to_keras,
    chain_to_source,
    describe_act,
    input_shape,
    known_shape,
    unsupported,
)


def _positive_finite(v) -> str | None:
    if not (math.isfinite(v) and v > 0):
        return "must be a finite number > 0"
    return None


def _unit_interval(v) -> str | None:
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        return "must be between 0 and 1"
    return None


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(np.float32)


def _chan_list(idx: list[int], limit: int = 8) -> str:
    s = ", ".join(str(i) for i in idx[:limit])
    return s + (f", ... ({len(idx)} channels)" if len(idx) > limit else "")


def _rank(ctx: MapContext, node: Node) -> int:
    shp = node.out_shape
    if shp is None and node.inputs:
        try:
            shp = ctx.graph.tensor_shape(node.inputs[0])
        except (KeyError, ValueError):
            shp = None
    return len(shp) if shp is not None else 4


def _keras_axis_cfg(axis: int, rank: int) -> int:
    k = to_keras_axis(axis, rank)
    return -1 if k == rank - 1 else k


def _refuse(node: Node, rule: str, why: str, layout: str = "NHWC") -> NodeMapping:
    return NodeMapping(source=node.name, source_type=node.source_type, rule=rule,
                       supported=False, error=why, layout=layout)


def _nonfinite_warning(what: str, arr) -> list[str]:
    bad = T.nonfinite_channels(arr)
    return [f"{what} is inf/NaN in channel(s) {_chan_list(bad)}"] if bad else []


def _bool_identity(arr, value: float) -> bool:
    return arr is None or bool(np.all(np.asarray(arr) == value))


BN_OPTIONS = {
    "epsilon": Option(float, None, "Keras epsilon (default: derived from the source so the "
                      "outputs stay exact)", check=_positive_finite),
    "momentum": Option(float, None, "Keras momentum (default: Caffe moving_average_fraction, "
                       "Lasagne 1 - alpha)", check=_unit_interval),
    "fuse_scale": Option(bool, True, "Caffe: fold the Scale (and Bias) that follows the "
                         "BatchNorm into the same BatchNormalization layer"),
    "variance": Option(str, "exact", "exact: adjust moving_variance to the chosen epsilon so the "
                       "outputs equal the source's; raw: store the source variance as is (outputs "
                       "change when epsilon differs)", choices=("exact", "raw")),
    "center": Option(bool, None, "keep a beta weight (default: when the source has one; true adds "
                     "beta = 0 for fine-tuning; false drops it)"),
    "scale": Option(bool, None, "keep a gamma weight (default: when the source has one; true adds "
                    "gamma = 1 for fine-tuning; false drops it)"),
}


def _channel_axis(node: Node, rank: int) -> int:
    """The source (NCHW) channel axis of a BatchNorm node."""
    form = node.attrs.get("form")
    if form == "lasagne":
        axes = node.attrs.get("axes")
        if axes not in (None, "auto"):
            axes = [a + rank if a < 0 else a for a in axes]
            kept = [a for a in range(rank) if a not in axes]
            if len(kept) != 1:
                raise ValueError(f"normalises over axes {tuple(axes)}: statistics over "
                                 f"{len(kept)} kept axes have no Keras BatchNormalization "
                                 "equivalent")
            return kept[0]
    return int(node.attrs.get("axis", 1))


def _values_per_channel(ctx: MapContext, node: Node, axis: int) -> int:
    """Values per channel in a training batch of BT.SCENARIO_BATCH samples (Caffe's M)."""
    try:
        shp = ctx.graph.tensor_shape(node.inputs[0])
    except (KeyError, ValueError):
        shp = None
    n = BT.SCENARIO_BATCH
    for i, d in enumerate(shp or ()):
        if i not in (0, axis) and d:
            n *= int(d)
    return n


def _training_rows(state: BT.SourceState, momentum: float, source_momentum: float, rate_name: str,
                   eps_k: float, mean, var_k, count: int, caveats=()) -> list[ParamRow]:
    """The training-update rows of a batch-norm mapping: the source's update next to Keras's,
    and how far the statistics drift apart in the stated scenario (mapping inspector, report)."""
    form = state.form
    urow = ParamRow("training_update", f"source: {BT.SOURCE_UPDATE[form]}  |  Keras: "
                    f"{BT.KERAS_UPDATE}", f"momentum {momentum:g}",
                    {rate_name: state.rate, "momentum": float(momentum)},
                    caveats=list(caveats))
    if abs(float(momentum) - source_momentum) > 1e-12:
        urow.caveats.append(f"momentum {momentum:g} differs from the source's rate "
                            f"({source_momentum:g}): the moving means drift apart too")
    if form != "gist" and abs(float(eps_k) - state.eps) > 1e-12 * max(1.0, state.eps):
        urow.caveats.append(f"training mode normalises with Keras epsilon {eps_k:g}, the source "
                            f"with {state.eps:g}: the batch-normalised outputs differ slightly")
    batches = BT.scenario_batches(state, count)
    pts = BT.update_drift(state, mean, var_k, momentum, eps_k, batches, BT.SCENARIO_STEPS)
    drow = ParamRow("update_drift",
                    f"max over channels after N steps from the converted statistics; mean: "
                    "|Keras - source| in source denominators; denominator sqrt(moving_variance + "
                    "epsilon): relative; scenario: batches of "
                    f"{BT.SCENARIO_BATCH}, mean shifted by {BT.SCENARIO_SPREAD:g} denominator, "
                    f"variance x (1 +- {BT.SCENARIO_SPREAD:g}) alternately",
                    BT.drift_summary(pts),
                    {f"N={p.step}": f"mean {p.mean_gap:.3g}, denominator {p.denominator_gap:.3g}"
                     for p in pts})
    return [urow, drow]


@register("BatchNorm")
class BatchNormRule(Rule):
    name = "BatchNorm"
    description = ("Caffe BatchNorm (+ Scale/Bias), Lasagne BatchNormLayer and the 2015 gist batch "
                   "norm -> keras.layers.BatchNormalization with exact inference outputs")
    options = BN_OPTIONS

    def map(self, node: Node, ctx: MapContext) -> NodeMapping:
        form = node.attrs.get("form", "caffe")
        rank = _rank(ctx, node)
        layout = keras_layout(rank)
        rule = f"{form}.BatchNorm"
        try:
            axis = _channel_axis(node, rank)
        except ValueError as e:
            return _refuse(node, rule, str(e), layout)
        if rank < 2 or not (1 <= axis < rank):
            return _refuse(node, rule, f"channel axis {axis} of a rank-{rank} tensor is not "
                           "supported (Keras BatchNormalization needs a non-batch axis)", layout)
        opts = ctx.options
        try:
            if form == "caffe":
                return self._caffe(node, ctx, opts, rank, axis, layout)
            if form == "lasagne":
                return self._lasagne(node, ctx, opts, rank, axis, layout)
            if form == "gist":
                return self._gist(node, ctx, opts, rank, axis, layout)
        except (ValueError, KeyError) as e:
            return _refuse(node, rule, f"cannot convert the parameters: {e}", layout)
        return _refuse(node, rule, f"unknown batch-norm form {form!r}", layout)

    # ------------------------------------------------------------------ common pieces
    @staticmethod
    def _common_rows(opts, rank, axis, eps_k, eps_row: ParamRow, momentum, mom_formula,
                     mom_sources, mom_caveats) -> list[ParamRow]:
        k_axis = _keras_axis_cfg(axis, rank)
        rows = [
            ParamRow("axis", f"source channel axis {axis} (NCHW) -> Keras axis {k_axis} "
                     f"(channels-last {keras_layout(rank)})", k_axis, {"axis": axis}),
            eps_row,
        ]
        mrow = ParamRow("momentum", mom_formula, float(momentum), mom_sources, option="momentum",
                        default=None, caveats=list(mom_caveats))
        if opts.get("momentum") is not None:
            mrow.formula = "set by override"
            mrow.value = float(opts["momentum"])
        rows.append(mrow)
        return rows

    @staticmethod
    def _gamma_beta(opts, C: int, gamma, beta, gamma_src: str, beta_src: str, sources_g,
                    sources_b, need_scale: bool = False
                    ) -> tuple[list[ParamRow], Any, Any, bool, bool]:
        """Resolve the center/scale options -> (rows, gamma, beta, scale, center).

        Default: keep gamma/beta when the source has them (``need_scale`` forces gamma,
        e.g. for a folded sign).  ``True`` adds identity weights; ``False`` drops them
        (a warning when they are not the identity)."""
        scale_opt, center_opt = opts.get("scale"), opts.get("center")
        use_scale = (gamma is not None or need_scale) if scale_opt is None else bool(scale_opt)
        use_center = (beta is not None) if center_opt is None else bool(center_opt)
        rows = []
        for key, flag, arr, ident, src, srcs, opt in (
                ("gamma", use_scale, gamma, 1.0, gamma_src, sources_g, "scale"),
                ("beta", use_center, beta, 0.0, beta_src, sources_b, "center")):
            frow = ParamRow(opt, (f"{key} present" if flag else f"no {key} ({key} = {ident:g} "
                                  "implied)"), flag, option=opt, default=None)
            vrow = ParamRow(key, src, None, srcs)
            if flag:
                if arr is None:
                    vrow.formula = (f"{ident:g} (added by the option; the source has no {key})")
                    arr = np.full(C, ident)
                vrow.value = _f32(arr)
                vrow.warnings += _nonfinite_warning(key, arr)
            else:
                vrow.formula = f"absent ({opt}=False): " + (src if arr is None else
                                                            f"the source's {key} is dropped")
                if arr is not None and not _bool_identity(arr, ident):
                    msg = f"{key} dropped although it is not {ident:g} everywhere: outputs change"
                    frow.warnings.append(msg)
                    vrow.warnings.append(msg)
                arr = None
            if key == "gamma":
                gamma = arr
            else:
                beta = arr
            rows.append((frow, vrow))
        (srow, grow), (crow, brow) = rows
        return [crow, srow, grow, brow], gamma, beta, use_scale, use_center

    @staticmethod
    def _variance_row(opts, formula_exact: str, formula_raw: str, var_exact, var_raw,
                      eps_k: float, exact_total, sources) -> tuple[ParamRow, ParamRow, np.ndarray]:
        mode = opts.get("variance", "exact")
        var = var_exact if mode == "exact" else var_raw
        vrow = ParamRow("moving_variance", formula_exact if mode == "exact" else formula_raw,
                        None, sources)
        neg = T.negative_channels(var)
        if neg:
            bad_out = [i for i in neg if var[i] + eps_k <= 0]
            msg = (f"moving_variance is negative in channel(s) {_chan_list(neg)}"
                   + ("; moving_variance + epsilon <= 0 there too, so Keras outputs NaN/inf"
                      if bad_out else
                      "; inference stays exact (moving_variance + epsilon > 0) but the statistics "
                      "are not a valid variance for fine-tuning"))
            if not bad_out:
                # float32 cancellation: var32 + eps32 resolves only ~ulp(eps) absolutely
                with np.errstate(divide="ignore", invalid="ignore"):
                    tot = np.asarray(var, np.float64)[neg] + eps_k
                    rel = float(np.max(2.0 ** -24 * eps_k / tot))
                if rel > 1e-6:
                    msg += (f"; float32 cancellation in moving_variance + epsilon: expect a "
                            f"relative output error up to ~{rel:.1g} (a smaller epsilon avoids it)")
            vrow.warnings.append(msg)
        vrow.warnings += _nonfinite_warning("moving_variance", var)
        mrow = ParamRow("variance", "exact: moving_variance + epsilon = the source's squared "
                        "denominator (outputs unchanged for any epsilon); raw: the source "
                        "variance as stored", mode, option="variance", default="exact")
        if mode == "raw":
            with np.errstate(invalid="ignore"):
                diff = np.abs((np.asarray(var_raw) + eps_k) - np.asarray(exact_total))
                tol = 1e-6 * np.maximum(np.abs(np.asarray(exact_total)), 1e-30)
            if np.any(diff > tol):
                msg = ("variance='raw' with an epsilon that differs from the one the source "
                       "implies: outputs change (up to a relative "
                       f"{float(np.nanmax(diff / np.maximum(np.abs(exact_total), 1e-30))):.2g} in "
                       "the denominator)")
                mrow.warnings.append(msg)
        vrow.value = _f32(var)
        return vrow, mrow, var

    @staticmethod
    def _spec(ctx, node, rank, axis, eps_k, momentum, use_center, use_scale, gamma, beta,
              mean, var, output: str) -> KerasLayerSpec:
        weights = []
        if use_scale:
            weights.append(_f32(gamma))
        if use_center:
            weights.append(_f32(beta))
        weights += [_f32(mean), _f32(var)]
        cfg = {"axis": _keras_axis_cfg(axis, rank), "momentum": float(momentum),
               "epsilon": float(eps_k), "center": bool(use_center), "scale": bool(use_scale)}
        return KerasLayerSpec(ctx.unique_name(node.name), "BatchNormalization", cfg,
                              [node.inputs[0]], output, weights)

    @staticmethod
    def _eps_row(opts, eps_k, formula, sources, warnings=()) -> ParamRow:
        r = ParamRow("epsilon", formula, float(eps_k), sources, option="epsilon", default=None,
                     caveats=["always set explicitly (never Keras' default 1e-3)"],
                     warnings=list(warnings))
        if opts.get("epsilon") is not None:
            r.formula = "set by override; " + r.formula
        if float(np.float32(eps_k)) == 0.0:
            r.warnings.append("epsilon underflows to 0 in float32: Keras divides by "
                              "sqrt(moving_variance) alone")
        return r

    # ------------------------------------------------------------------ Caffe
    def _caffe(self, node, ctx, opts, rank, axis, layout) -> NodeMapping:
        b0, b1, b2 = node.p("mean"), node.p("variance"), node.p("scale_factor")
        if b0 is None or b1 is None:
            raise ValueError("BatchNorm needs blobs 0 (mean) and 1 (variance)")
        if b2 is None:
            b2 = np.array([1.0])
        C = int(np.asarray(b0).size)
        b0, b1 = np.asarray(b0).reshape(-1), np.asarray(b1).reshape(-1)
        if b1.size != C:
            raise ValueError(f"mean has {C} channels but variance has {b1.size}")
        eps_src = float(node.attrs.get("eps", 1e-5))
        maf = float(node.attrs.get("moving_average_fraction", 0.999))
        mean, var, s = T.caffe_bn_stats(b0, b1, b2)
        blob2 = float(np.asarray(b2, dtype=np.float64).reshape(-1)[0]) if np.size(b2) else 0.0

        eps_k = eps_src if opts.get("epsilon") is None else float(opts["epsilon"])
        eps_row = self._eps_row(opts, eps_k, "eps (Caffe batch_norm_param.eps)", {"eps": eps_src})

        momentum = maf
        caveats = [("Caffe keeps normalised running sums (sf <- maf*sf + 1, blob <- maf*blob + "
                    "batch): equal to an exponential average with momentum maf once sf has "
                    "converged")]
        rows = self._common_rows(opts, rank, axis, eps_k, eps_row, momentum,
                                 "moving_average_fraction", {"moving_average_fraction": maf}, caveats)
        if opts.get("momentum") is not None:
            momentum = float(opts["momentum"])

        # ---- fusion with the following Scale / Bias
        partners = self._caffe_partners(node, ctx, C) if opts.get("fuse_scale", True) else []
        scale_node = next((p for p in partners if p.op == "Scale"), None)
        bias_node = next((p for p in partners if p.op == "Bias"), None)
        gamma = beta = None
        g_src, b_src = "absent: Caffe BatchNorm has no gamma", "absent: Caffe BatchNorm has no beta"
        sg, sb = {}, {}
        if scale_node is not None:
            gamma = np.asarray(scale_node.p("scale"), dtype=np.float64).reshape(-1)
            g_src = f"Scale '{scale_node.name}' blob0"
            sg = {f"{scale_node.name}.blob0": scale_node.p("scale")}
            if scale_node.attrs.get("bias"):
                beta = np.asarray(scale_node.p("bias"), dtype=np.float64).reshape(-1)
                b_src = f"Scale '{scale_node.name}' blob1"
                sb = {f"{scale_node.name}.blob1": scale_node.p("bias")}
        if bias_node is not None:
            beta = np.asarray(bias_node.p("bias"), dtype=np.float64).reshape(-1)
            b_src = f"Bias '{bias_node.name}' blob0"
            sb = {f"{bias_node.name}.blob0": bias_node.p("bias")}
        if scale_node is None and bias_node is None:
            g_src = "absent: Caffe BatchNorm has no gamma (no Scale follows"
            g_src += ")" if opts.get("fuse_scale", True) else " fused: fuse_scale=false)"
        gb_rows, g, bt, use_scale, use_center = self._gamma_beta(opts, C, gamma, beta, g_src,
                                                                 b_src, sg, sb)
        rows += gb_rows

        # ---- statistics
        mrow = ParamRow("moving_mean", "blob0 * s,  s = 0 if blob2 == 0 else 1/blob2", _f32(mean),
                        {"blob0": b0, "blob2": blob2, "s": s})
        if blob2 == 0:
            mrow.caveats.append("blob2 = 0: Caffe uses zero mean and variance (s = 0)")
        mrow.warnings += _nonfinite_warning("moving_mean", mean)
        exact_var = T.caffe_variance_for_epsilon(var, eps_src, eps_k)
        fx = "blob1 * s" if eps_k == eps_src else "blob1 * s + eps - epsilon"
        vrow, moderow, var_k = self._variance_row(
            opts, fx, "blob1 * s (raw)", exact_var, var, eps_k, var + eps_src,
            {"blob1": b1, "s": s, "eps": eps_src})
        src_neg = [i for i in range(C) if np.isfinite(var[i]) and var[i] + eps_src <= 0]
        if src_neg:
            vrow.warnings.append(f"Caffe's own var + eps <= 0 in channel(s) {_chan_list(src_neg)}: "
                                 "the source outputs NaN/inf there")
        rows += [mrow, vrow, moderow]
        count = _values_per_channel(ctx, node, axis)
        sf_w = 1.0 / (maf * blob2 + 1.0) if maf * blob2 + 1.0 != 0 else float("nan")
        rows += _training_rows(
            BT.SourceState("caffe", b0, b1, maf, eps_src, sf=blob2), momentum, maf,
            "moving_average_fraction", eps_k, mean, var_k, count,
            [(f"Caffe weighs the next batch by 1/(maf*sf + 1) = {sf_w:.3g} (sf = blob2 = "
              f"{blob2:g}), Keras by 1 - momentum = {1 - momentum:.3g}: equal once sf = 1/(1 - maf)"),
             (f"Caffe stores the unbiased variance (x M/(M-1), M = {count} values per channel in a "
              f"batch of {BT.SCENARIO_BATCH}), Keras the biased one")])
        if node.attrs.get("use_global_stats") is False:
            rows[0].warnings.append("use_global_stats: false -- Caffe normalises with each "
                                    "batch's own statistics; Keras (inference) uses the stored ones")

        fuse_row = ParamRow("fuse_scale", "", bool(partners), {}, option="fuse_scale", default=True)
        if partners:
            fuse_row.formula = ("BatchNorm + " + " + ".join(f"{p.op} '{p.name}'" for p in partners)
                                + " -> one BatchNormalization")
        elif opts.get("fuse_scale", True):
            fuse_row.formula = "nothing to fuse (no single-consumer Scale/Bias over axis 1 follows)"
        else:
            fuse_row.formula = "not fused (fuse_scale=false): a following Scale becomes ChannelAffine"
        rows.append(fuse_row)

        out_tensor = partners[-1].outputs[0] if partners else node.outputs[0]
        spec = self._spec(ctx, node, rank, axis, eps_k, momentum, use_center, use_scale, g, bt,
                          mean, var_k, out_tensor)
        for p in partners:
            ctx.absorb(p, into=node)
            prow = [r for r in rows if r.key in ("gamma", "beta", "scale", "center", "fuse_scale")]
            ctx.extra_rows[p.name] = prow
        return NodeMapping(source=node.name, source_type=node.source_type, rule="caffe.BatchNorm",
                           layers=[spec], rows=rows, keras_output=spec.name, layout=layout)

    @staticmethod
    def _caffe_partners(node: Node, ctx: MapContext, C: int) -> list[Node]:
        """The Scale (and/or Bias) that can be folded into this BatchNorm: each the only
        consumer of the previous output, one input, per-channel over axis 1."""
        out: list[Node] = []
        cur = node
        while True:
            cons = ctx.consumers(cur.outputs[0])
            if len(cons) != 1:
                break
            nxt = cons[0]
            if nxt.name in ctx.absorbed or nxt.inputs != [cur.outputs[0]] or nxt.num_outputs != 1:
                break
            if int(nxt.attrs.get("axis", 1)) != 1 or int(nxt.attrs.get("num_axes", 1)) != 1:
                break
            have_scale = any(p.op == "Scale" for p in out)
            have_bias = any(p.op == "Bias" or (p.op == "Scale" and p.attrs.get("bias")) for p in out)
            if nxt.op == "Scale" and not have_scale and not have_bias \
                    and not nxt.attrs.get("two_input") and nxt.p("scale") is not None \
                    and np.size(nxt.p("scale")) == C \
                    and (not nxt.attrs.get("bias") or np.size(nxt.p("bias")) == C) or nxt.op == "Bias" and not have_bias and nxt.p("bias") is not None \
                    and np.size(nxt.p("bias")) == C:
                out.append(nxt)
            else:
                break
            cur = nxt
        return out

    # ------------------------------------------------------------------ Lasagne
    def _lasagne(self, node, ctx, opts, rank, axis, layout) -> NodeMapping:
        mean, inv = node.p("mean"), node.p("inv_std")
        if mean is None or inv is None:
            raise ValueError("BatchNormLayer needs mean and inv_std")
        mean = np.asarray(mean, np.float64).reshape(-1)
        inv = np.asarray(inv, np.float64).reshape(-1)
        gamma, beta = node.p("gamma"), node.p("beta")
        gamma = None if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
        beta = None if beta is None else np.asarray(beta, np.float64).reshape(-1)
        C = mean.size
        for nm, a in (("inv_std", inv), ("gamma", gamma), ("beta", beta)):
            if a is not None and a.size != C:
                raise ValueError(f"mean has {C} channels but {nm} has {a.size}")
        eps_src = float(node.attrs.get("epsilon", 1e-4))
        alpha = float(node.attrs.get("alpha", 0.1))
        total = T.lasagne_total_variance(inv)

        warn_eps = []
        if opts.get("epsilon") is None:
            eps_k = T.safe_epsilon_for_lasagne(inv, eps_src)
            formula = "epsilon of the layer"
            if eps_k != eps_src:
                small = [i for i in range(C) if np.isfinite(total[i]) and total[i] < eps_src]
                formula = ("largest float32 <= min 1/inv_std^2 (the layer's epsilon would make "
                           "moving_variance negative)")
                warn_eps.append(f"1/inv_std^2 < the layer epsilon {eps_src:g} in channel(s) "
                                f"{_chan_list(small)} (inv_std not of the form 1/sqrt(var + eps)?):"
                                f" epsilon lowered to {eps_k:.7g} to keep every variance >= 0; "
                                "outputs stay exact")
        else:
            eps_k = float(opts["epsilon"])
            formula = "override"
        eps_row = self._eps_row(opts, eps_k, formula, {"epsilon": eps_src}, warn_eps)
        momentum = T.momentum_from_alpha(alpha)
        rows = self._common_rows(
            opts, rank, axis, eps_k, eps_row, momentum, "1 - alpha", {"alpha": alpha},
            [("Lasagne keeps a running average of inv_std, not of the variance: the momentum "
              "matches for the update rule, the statistics are exact for inference only")])
        if opts.get("momentum") is not None:
            momentum = float(opts["momentum"])

        neg_inv = T.negative_channels(inv)
        g_in = gamma
        if neg_inv:
            g_in = T.fold_sign_into_gamma(np.ones(C) if gamma is None else gamma, inv)
        gb_rows, g, bt, use_scale, use_center = self._gamma_beta(
            opts, C, g_in, beta,
            "gamma" + (" * sign(inv_std)" if neg_inv else "") if gamma is not None else
            ("sign(inv_std)" if neg_inv else "absent: gamma=None in Lasagne (1 implied)"),
            "beta" if beta is not None else "absent: beta=None in Lasagne (0 implied)",
            {} if gamma is None else {"gamma": gamma}, {} if beta is None else {"beta": beta},
            need_scale=bool(neg_inv))
        for r in gb_rows:
            if r.key == "gamma" and neg_inv:
                r.warnings.append(f"inv_std is negative in channel(s) {_chan_list(neg_inv)}: "
                                  "its sign is folded into gamma")
                if not use_scale:
                    r.warnings.append("negative inv_std needs gamma, but scale=false: outputs "
                                      "change sign there")
        rows += gb_rows

        mrow = ParamRow("moving_mean", "mean", _f32(mean), {"mean": mean})
        mrow.warnings += _nonfinite_warning("mean", mean)
        vrow, moderow, var_k = self._variance_row(
            opts, "1/inv_std^2 - epsilon", "1/inv_std^2 - eps (the layer's epsilon; raw)",
            T.lasagne_variance(inv, eps_k), T.lasagne_variance(inv, eps_src), eps_k, total,
            {"inv_std": inv, "eps": eps_src})
        zero = [i for i in range(C) if inv[i] == 0]
        if zero:
            vrow.warnings.append(f"inv_std = 0 in channel(s) {_chan_list(zero)}: Lasagne outputs "
                                 "beta there; Keras gets moving_variance = inf (same result)")
        vrow.warnings += _nonfinite_warning("inv_std", inv)
        rows += [mrow, vrow, moderow]
        rows += _training_rows(
            BT.SourceState("lasagne", mean, inv, alpha, eps_src), momentum, 1.0 - alpha, "alpha",
            eps_k, mean, var_k, _values_per_channel(ctx, node, axis),
            [("Lasagne averages inv_std = 1/sqrt(var_b + epsilon), Keras the variance: with "
              "momentum = 1 - alpha the means follow the same recursion, the denominators "
              "differ by the spread of the batch variances (update_drift)")])

        spec = self._spec(ctx, node, rank, axis, eps_k, momentum, use_center, use_scale, g, bt,
                          mean, var_k, node.outputs[0])
        return NodeMapping(source=node.name, source_type=node.source_type, rule="lasagne.BatchNorm",
                           layers=[spec], rows=rows, keras_output=spec.name, layout=layout)

    # ------------------------------------------------------------------ gist
    def _gist(self, node, ctx, opts, rank, axis, layout) -> NodeMapping:
        def sq(name):
            v = node.p(name)
            return None if v is None else T.squeeze_channels(np.asarray(v, np.float64), axis)

        mean, std, beta, gamma = sq("mean"), sq("std"), sq("beta"), sq("gamma")
        if mean is None or std is None:
            raise ValueError("the gist BatchNormLayer needs mean and std")
        C = mean.size
        for nm, a in (("std", std), ("gamma", gamma), ("beta", beta)):
            if a is not None and a.size != C:
                raise ValueError(f"mean has {C} channels but {nm} has {a.size}")
        eps_src = float(node.attrs.get("epsilon", 0.01))
        alpha = float(node.attrs.get("alpha", 0.5))
        total = T.gist_total_variance(std, eps_src)
        d = std + eps_src

        warn_eps = []
        if opts.get("epsilon") is None:
            eps_k = T.safe_epsilon_for_gist(std, eps_src)
            formula = "eps^2 (the std = 0 limit of (std + eps)^2)"
            if eps_k != eps_src ** 2:
                formula = "largest float32 <= min (std + eps)^2"
                warn_eps.append(f"(std + eps)^2 < eps^2 in some channel (negative std): epsilon "
                                f"lowered to {eps_k:.7g}; outputs stay exact")
        else:
            eps_k = float(opts["epsilon"])
            formula = "override"
        eps_row = self._eps_row(opts, eps_k, formula, {"epsilon": eps_src}, warn_eps)
        eps_row.caveats.append("the gist adds epsilon to the standard deviation, Keras to the "
                               "variance: fine-tuning normalises slightly differently")
        momentum = T.momentum_from_alpha(alpha)
        rows = self._common_rows(opts, rank, axis, eps_k, eps_row, momentum, "1 - alpha",
                                 {"alpha": alpha}, [("the gist averages std, not the variance: "
                                                     "exact for inference only")])
        if opts.get("momentum") is not None:
            momentum = float(opts["momentum"])

        neg = T.negative_channels(d)
        g_in = gamma
        if neg:
            g_in = T.fold_sign_into_gamma(np.ones(C) if gamma is None else gamma, d)
        gb_rows, g, bt, use_scale, use_center = self._gamma_beta(
            opts, C, g_in, beta, "gamma" + (" * sign(std + eps)" if neg else ""), "beta",
            {} if gamma is None else {"gamma": gamma}, {} if beta is None else {"beta": beta},
            need_scale=bool(neg))
        for r in gb_rows:
            if r.key == "gamma" and neg:
                r.warnings.append(f"std + eps is negative in channel(s) {_chan_list(neg)}: its "
                                  "sign is folded into gamma")
        rows += gb_rows
        mrow = ParamRow("moving_mean", "mean", _f32(mean), {"mean": mean})
        mrow.warnings += _nonfinite_warning("mean", mean)
        zero = [i for i in range(C) if d[i] == 0]
        vrow, moderow, var_k = self._variance_row(
            opts, "(std + eps)^2 - epsilon", "std^2 (raw)", T.gist_variance(std, eps_src, eps_k),
            std * std, eps_k, total, {"std": std, "eps": eps_src})
        if zero:
            vrow.warnings.append(f"std + eps = 0 in channel(s) {_chan_list(zero)}: the source "
                                 "divides by zero there")
        rows += [mrow, vrow, moderow]
        rows += _training_rows(
            BT.SourceState("gist", mean, std, alpha, eps_src), momentum, 1.0 - alpha, "alpha",
            eps_k, mean, var_k, _values_per_channel(ctx, node, axis),
            [("the gist normalises a training batch by std_b + eps, Keras by sqrt(var_b + "
              "epsilon): training-mode outputs differ; it averages std, Keras the variance")])

        act = node.attrs.get("activation")
        try:
            act_l = activation_layer(act, rank) if act else None
        except ValueError as e:
            raise ValueError(f"nonlinearity: {e}") from None
        bn_out = f"{node.name}/bn" if act_l is not None else node.outputs[0]
        spec = self._spec(ctx, node, rank, axis, eps_k, momentum, use_center, use_scale, g, bt,
                          mean, var_k, bn_out)
        layers = [spec]
        if act_l is not None:
            cls, cfg, aformula = act_l
            act_spec = KerasLayerSpec(ctx.unique_name(f"{node.name}_nonlin"), cls, dict(cfg),
                                      [bn_out], node.outputs[0],
                                      act_weights(cls, cfg, act, rank))
            layers.append(act_spec)
            rows.append(ParamRow("activation", f"separate {cls} layer '{act_spec.name}' after the "
                                 f"BatchNormalization: {aformula}", cls,
                                 {"nonlinearity": describe_act(act)}))
        return NodeMapping(source=node.name, source_type=node.source_type, rule="gist.BatchNorm",
                           layers=layers, rows=rows, keras_output=layers[-1].name, layout=layout)


def _affine_axes(node: Node, rank: int, pshape: tuple) -> tuple[list[int], list[int]]:
    """Source axes covered by a Scale/Bias parameter and the matching Keras axes."""
    axis = int(node.attrs.get("axis", 1))
    if axis < 0:
        axis += rank
    num_axes = int(node.attrs.get("num_axes", 1))
    if num_axes < 0:
        num_axes = rank - axis
    src_axes = list(range(axis, axis + num_axes))
    if any(a <= 0 or a >= rank for a in src_axes):
        raise ValueError(f"axis {axis} / num_axes {num_axes} covers the batch axis or lies "
                         f"outside a rank-{rank} tensor")
    return src_axes, [to_keras_axis(a, rank) for a in src_axes]


def _affine_param(p, node: Node, rank: int, in_shape):
    """Return (keras_axis_cfg, param in Keras axis order) for a Scale/Bias parameter."""
    p = np.asarray(p, np.float64)
    num_axes = int(node.attrs.get("num_axes", 1))
    if num_axes == 0:
        # a scalar: broadcast to the channels
        if in_shape is None or len(in_shape) < 2 or in_shape[1] is None:
            raise ValueError("a scalar Scale/Bias needs a known channel count")
        C = int(in_shape[1])
        return -1, np.full(C, float(p.reshape(-1)[0]))
    src_axes, k_axes = _affine_axes(node, rank, p.shape)
    want = None
    if in_shape is not None:
        want = tuple(in_shape[a] for a in src_axes)
    if len(src_axes) == 1:
        p1 = p.reshape(-1)
        if want is not None and want[0] is not None and p1.size != want[0]:
            raise ValueError(f"parameter has {p1.size} values, the input has {want[0]} along "
                             f"axis {src_axes[0]}")
        return _keras_axis_cfg(src_axes[0], rank), p1
    shp = tuple(int(d) for d in (want if want is not None and None not in want else p.shape))
    p = p.reshape(shp)
    perm = list(np.argsort(k_axes))
    return [int(k_axes[i]) for i in perm], np.ascontiguousarray(p.transpose(perm))


def _broadcast_second(node, ctx, merge: str, what: str):
    """Bias / Scale whose second bottom (shape x.shape[axis:axis+k], axis 0: batch included)
    is broadcast over the input: the operand is brought to a rank-r broadcastable shape."""
    x_shape = input_shape(node, ctx, 0)
    s_shape = input_shape(node, ctx, 1)
    if not known_shape(x_shape) or not known_shape(s_shape):
        return unsupported(node, ctx, f"a two-input {what} needs known input shapes")
    rank, k = len(x_shape), len(s_shape)
    axis = int(node.attrs.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis != 0:
        return unsupported(node, ctx, f"a two-input {what} at axis {axis}: its second bottom "
                           f"{tuple(s_shape)} has no batch axis, which a Keras tensor always has")
    if tuple(x_shape[1:k]) != tuple(s_shape[1:k]) or k > rank:
        return unsupported(node, ctx, f"second bottom {tuple(s_shape)} does not match input "
                           f"{tuple(x_shape)} at axis 0")
    chain = Chain(node, ctx, inputs=[node.inputs[1]])
    if k < rank:
        chain_to_source(chain, k)
        chain.add("Reshape", {"target_shape": [int(d) for d in s_shape[1:]] + [1] * (rank - k)},
                  suffix="bcast")
        chain_to_keras(chain, rank)
        operand = chain.cur[0]
    else:
        operand = node.inputs[1]
    chain.add(merge, {}, inputs=[node.inputs[0], operand])
    rows = [ParamRow("broadcast", f"second bottom {tuple(s_shape)} reshaped to broadcast over "
                     f"{tuple(x_shape)} (source order), then {merge}", list(s_shape),
                     sources={"axis": axis})]
    return chain.finish(rows=rows, layout=keras_layout(rank))


def _affine_context(node: Node, ctx: MapContext, op: str):
    """(rank, layout, rule name, input shape) of a Scale / Bias node."""
    rank = _rank(ctx, node)
    in_shape = ctx.graph.tensor_shape(node.inputs[0]) if node.inputs else None
    return rank, keras_layout(rank), f"{ctx.graph.framework}.{op}", in_shape


def _layers_mapping(node: Node, rule: str, layers: list, rows: list, layout: str) -> NodeMapping:
    """The mapping of ``node`` computed by ``layers`` (the last one gives the node's output)."""
    return NodeMapping(source=node.name, source_type=node.source_type, rule=rule,
                       layers=layers, rows=rows, keras_output=layers[-1].name, layout=layout)


@register("Scale")
class ScaleRule(Rule):
    name = "Scale"
    description = ("Caffe Scale (not fused into a BatchNorm) -> ChannelAffine; two inputs -> Multiply"
                   "; any axis-0 scale shape -> broadcast + Multiply")
    options: ClassVar[dict[str, Option]] = {}

    def map(self, node: Node, ctx: MapContext) -> NodeMapping:
        rank, layout, rule, in_shape = _affine_context(node, ctx, "Scale")
        if node.attrs.get("two_input") or len(node.inputs) == 2:
            m = self._two_input(node, ctx, rank, layout, in_shape)
            if m.supported or len(node.inputs) != 2 or node.attrs.get("bias"):
                return m
            # any other axis-0 scale shape: reshaped to broadcast, then Multiply
            return _broadcast_second(node, ctx, "Multiply", "Scale")
        try:
            k_axis, scale = _affine_param(node.p("scale"), node, rank, in_shape)
            bias = None
            if node.attrs.get("bias"):
                _, bias = _affine_param(node.p("bias"), node, rank, in_shape)
        except (ValueError, TypeError) as e:
            return _refuse(node, rule, f"cannot convert the Scale: {e}", layout)
        rows = [ParamRow("axis", f"source axis {node.attrs.get('axis', 1)} (num_axes "
                         f"{node.attrs.get('num_axes', 1)}) -> Keras axis {k_axis}", k_axis,
                         {"axis": node.attrs.get("axis", 1), "num_axes": node.attrs.get("num_axes", 1)}),
                ParamRow("scale", "blob0 (y = x * scale" + (" + bias)" if bias is not None else ")"),
                         _f32(scale), {"blob0": node.p("scale")},
                         warnings=_nonfinite_warning("scale", scale))]
        weights = [_f32(scale)]
        if bias is not None:
            rows.append(ParamRow("bias", "blob1", _f32(bias), {"blob1": node.p("bias")},
                                 warnings=_nonfinite_warning("bias", bias)))
            weights.append(_f32(bias))
        spec = KerasLayerSpec(ctx.unique_name(node.name), "ChannelAffine",
                              {"axis": k_axis, "use_scale": True, "use_bias": bias is not None},
                              [node.inputs[0]], node.outputs[0], weights)
        return _layers_mapping(node, rule, [spec], rows, layout)

    def _two_input(self, node, ctx, rank, layout, in_shape) -> NodeMapping:
        rule = f"{ctx.graph.framework}.Scale"
        if len(node.inputs) != 2:
            return _refuse(node, rule, "a two-input Scale needs exactly two inputs", layout)
        if node.attrs.get("bias"):
            return _refuse(node, rule, "a two-input Scale with bias_term is not supported",
                           layout)
        x_id, s_id = node.inputs
        s_shape = ctx.graph.tensor_shape(s_id)
        axis = int(node.attrs.get("axis", 1))
        if axis < 0:
            axis += rank
        if s_shape is None or in_shape is None:
            return _refuse(node, rule, "a two-input Scale needs known input shapes", layout)
        k = len(s_shape)
        expect = tuple(in_shape[axis:axis + k])
        if axis != 0 or not all(a is None or b is None or a == b
                                for a, b in zip(s_shape, expect)) or k > rank:
            return _refuse(node, rule, f"two-input Scale: scale shape {tuple(s_shape)} at axis "
                           f"{axis} over input {tuple(in_shape)} is not supported (only "
                           "axis 0 with a (N, C) or same-rank scale)", layout)
        layers = []
        rows = []
        s_in = s_id
        if k == rank:
            note = "same rank: element-wise product (size-1 axes broadcast)"
        elif k == 2:
            C = s_shape[1]
            target = [1] * (rank - 2) + [int(C)]
            s_in = f"{node.name}/scale_bcast"
            layers.append(KerasLayerSpec(ctx.unique_name(f"{node.name}_bcast"), "Reshape",
                                         {"target_shape": target}, [s_id], s_in))
            note = (f"scale (N, C) reshaped to (N, {', '.join(map(str, target))}) and broadcast "
                    "over the spatial axes")
        else:
            return _refuse(node, rule, f"two-input Scale with a rank-{k} scale over a "
                           f"rank-{rank} input is not supported", layout)
        layers.append(KerasLayerSpec(ctx.unique_name(node.name), "Multiply", {}, [x_id, s_in],
                                     node.outputs[0]))
        rows.append(ParamRow("broadcast", note, list(s_shape), {"scale_shape": list(s_shape),
                                                                "input_shape": list(in_shape)}))
        return _layers_mapping(node, rule, layers, rows, layout)


@register("Bias")
class BiasRule(Rule):
    name = "Bias"
    description = ("Caffe Bias (not fused into a BatchNorm) -> ChannelAffine(use_scale=False)"
                   "; two bottoms -> broadcast + Add")
    options: ClassVar[dict[str, Option]] = {}

    def map(self, node: Node, ctx: MapContext) -> NodeMapping:
        rank, layout, rule, in_shape = _affine_context(node, ctx, "Bias")
        if len(node.inputs) == 2:     # the bias is the second bottom
            return _broadcast_second(node, ctx, "Add", "Bias")
        if len(node.inputs) != 1:
            return _refuse(node, rule, "a two-input Bias is not supported", layout)
        try:
            k_axis, bias = _affine_param(node.p("bias"), node, rank, in_shape)
        except (ValueError, TypeError) as e:
            return _refuse(node, rule, f"cannot convert the Bias: {e}", layout)
        rows = [ParamRow("axis", f"source axis {node.attrs.get('axis', 1)} -> Keras axis {k_axis}",
                         k_axis, {"axis": node.attrs.get("axis", 1)}),
                ParamRow("bias", "blob0 (y = x + bias)", _f32(bias), {"blob0": node.p("bias")},
                         warnings=_nonfinite_warning("bias", bias))]
        spec = KerasLayerSpec(ctx.unique_name(node.name), "ChannelAffine",
                              {"axis": k_axis, "use_scale": False, "use_bias": True},
                              [node.inputs[0]], node.outputs[0], [_f32(bias)])
        return _layers_mapping(node, rule, [spec], rows, layout)


@register("LRN")
class LRNRule(Rule):
    name = "LRN"
    description = "Custom LRN layer: y = x / (k + coeff * sum x^2)^beta."

    def map(self, node, ctx):
        a = node.attrs
        rank = rank_of(input_shape(node, ctx))
        if rank != 4:
            return unsupported(node, ctx, f"LRN on a rank-{rank} input")
        region = a.get("region", "across")
        cfg = {"region": region, "size": int(a.get("size", 5)), "coeff": float(a["coeff"]),
               "beta": float(a.get("beta", 0.75)), "k": float(a.get("k", 1.0))}
        chain = Chain(node, ctx)
        chain.add("LRN", cfg)
        n = cfg["size"]
        src_alpha = a.get("source_alpha")
        rows = [ParamRow("coeff", "factor on the sum of squares (Caffe across: alpha/n, within: alpha/n^2; "
                         "Lasagne: alpha)", cfg["coeff"], sources={"alpha": src_alpha, "local_size": n,
                                                                    "region": region}),
                ParamRow("beta", "beta", cfg["beta"], sources={"beta": a.get("beta")}),
                ParamRow("k", "k", cfg["k"], sources={"k": a.get("k")})]
        return chain.finish(rows=rows, layout="NHWC")


@register("Normalize")
class NormalizeRule(Rule):
    name = "Normalize"
    description = ("UnitNormalization over C (or H, W, C when across_spatial) and a 1x1 "
                   "DepthwiseConv2D holding the scale.")

    def map(self, node, ctx):
        x = input_shape(node, ctx)
        if rank_of(x) != 4:
            return unsupported(node, ctx, f"Normalize needs a 4-d input (rank {rank_of(x)})")
        a = node.attrs
        eps = float(a.get("eps", 1e-10))
        if eps > 1e-6:
            return unsupported(node, ctx, f"Normalize eps {eps:g} is too large for Keras "
                                          "UnitNormalization (which has no eps term) to be exact")
        across = bool(a.get("across_spatial", True))
        chain = Chain(node, ctx)
        chain.add("UnitNormalization", {"axis": [1, 2, 3] if across else -1}, suffix="l2")
        rows = [ParamRow("norm", "x * rsqrt(sum x^2) over " + ("H, W, C" if across else "C")
                         + f" (the fork: x / sqrt(sum x^2 + {eps:g}); equal up to a relative "
                         "eps / (2 sum x^2))", "UnitNormalization",
                         sources={"across_spatial": across, "eps": eps})]
        s = node.p("scale")
        C = x[1]
        if s is not None:
            if s.size > 1:
                k = np.asarray(s, F32).reshape(1, 1, -1, 1)
            else:
                if C is None:
                    return unsupported(node, ctx, "a shared Normalize scale needs a known "
                                                  "channel count")
                k = np.full((1, 1, int(C), 1), float(np.asarray(s).reshape(-1)[0]), F32)
            chain.add("DepthwiseConv2D", {"kernel_size": [1, 1], "strides": [1, 1],
                                          "padding": "valid", "depth_multiplier": 1,
                                          "use_bias": False, "activation": "linear"},
                      weights=[k])
            rows.append(ParamRow("scale", "1x1 DepthwiseConv2D kernel (1, 1, C, 1) = scale"
                                 + (" (shared value repeated)" if s.size == 1 else ""), k,
                                 sources={"blobs[0]": np.asarray(s),
                                          "channel_shared": a.get("channel_shared")}))
        return chain.finish(rows=rows, layout="NHWC")


@register("MVN")
class MVNRule(Rule):
    name = "MVN"
    description = ("Caffe MVN: x - GlobalAveragePooling(keepdims); LayerNormalization(epsilon=eps^2) "
                   "when normalize_variance.")

    def map(self, node, ctx):
        in_shape = input_shape(node, ctx)
        rank = rank_of(in_shape)
        a = node.attrs
        across = bool(a.get("across_channels", False))
        eps = float(a.get("eps", 1e-9))
        if rank not in (3, 4):
            return unsupported(node, ctx, f"MVN on a rank-{rank} input (only 3-d and 4-d)")
        spatial = list(range(1, rank - 1))
        axes = spatial + ([rank - 1] if across else [])
        chain = Chain(node, ctx)
        rows: list[ParamRow] = []
        if a.get("normalize_variance", True):
            chain.add("LayerNormalization", {"axis": axes, "epsilon": eps * eps, "center": False,
                                             "scale": False})
            rows.append(ParamRow("epsilon", "eps^2: Keras divides by sqrt(var + eps^2), Caffe by "
                                 "sqrt(var) + eps (equal at var = 0; relative difference <= eps/std)",
                                 eps * eps, sources={"eps": eps},
                                 caveats=[f"exact up to {eps:g} / std relative"]))
        else:
            if across:
                if rank == 4:
                    chain.add("GlobalAveragePooling2D", {"keepdims": True}, suffix="hw")
                else:
                    chain.add("GlobalAveragePooling1D", {"keepdims": True}, suffix="w")
                # mean over channels of the spatial means (equal counts per channel)
                chain.add("Dense", {"units": 1, "use_bias": False}, suffix="mean",
                          weights=[np.full((int(in_shape[1]), 1), 1.0 / int(in_shape[1]), F32)])
            else:
                chain.add("GlobalAveragePooling2D" if rank == 4 else "GlobalAveragePooling1D",
                          {"keepdims": True}, suffix="mean")
            mean = chain.cur[0]
            chain.add("Subtract", {}, inputs=[node.inputs[0], mean])
            rows.append(ParamRow("mean", f"x - mean over {'C, ' if across else ''}the spatial axes "
                                 "(broadcast)", "subtract", sources={"across_channels": across}))
        if rank == 3:   # Caffe's top is (num, channels, height, 1)
            chain.add("Reshape", {"target_shape": [int(in_shape[2]), 1, int(in_shape[1])]},
                      suffix="to4d")
            rows.append(ParamRow("shape", "Caffe's MVN top is 4-d: (N, C, L) -> (N, C, L, 1)",
                                 (in_shape[0], in_shape[1], in_shape[2], 1)))
        return chain.finish(rows=rows, layout=keras_layout(4))


@register("Standardize")
class StandardizeRule(Rule):
    name = "Standardize"
    description = ("Lasagne StandardizationLayer: LayerNormalization(axes, epsilon, no center/scale) "
                   "= (x - mean) / sqrt(var + epsilon).")

    def map(self, node, ctx):
        shp = input_shape(node, ctx)
        if shp is None:
            return unsupported(node, ctx, "standardization needs a known input rank")
        rank = len(shp)
        eps = float(node.attrs.get("epsilon", 1e-4))
        axes = sorted(to_keras_axis(int(a), rank) for a in node.attrs["axes"])
        chain = Chain(node, ctx)
        chain.add("LayerNormalization", {"axis": axes, "epsilon": eps, "center": False,
                                         "scale": False})
        rows = [ParamRow("epsilon", "(x - mean) / sqrt(var + epsilon) over source axes "
                         f"{list(node.attrs['axes'])} (Keras axes {axes})", eps,
                         sources={"epsilon": eps, "axes": list(node.attrs["axes"])})]
        return chain.finish(rows=rows, layout=keras_layout(rank))
