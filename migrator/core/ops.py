"""The canonical op catalogue: every op the IR knows, its family and its provenance.

Each op belongs to exactly one *family*; every aspect (shape rules in
:mod:`migrator.core.shapes`, reference kernels in :mod:`migrator.core.reference.kernels`,
mapping rules in :mod:`migrator.core.mapping.rules`, Keras constructs in
:mod:`migrator.core.keras_build.constructs`) keeps the op in the module named after its
family, so a reader finds an op in the file of the same name in every aspect
(``tests/core/test_registries.py`` and ``tests/core/test_rule_registry.py`` check it).  Provenance (BVLC Caffe, a Caffe fork, Lasagne) is
data on the op, never a module name.

Importers MUST produce exactly the attributes documented here (defaults filled in);
reference kernels and mapping rules may rely on them.
"""
from __future__ import annotations

from dataclasses import dataclass

#: the op families, in the order the documentation lists them
FAMILIES: tuple[str, ...] = ("io", "conv", "dense", "pool", "norm", "activation", "resize", "layout",
                             "merge", "reduce", "recurrent", "embedding")


@dataclass(frozen=True)
class OpSpec:
    """One canonical op: its name, family, the frameworks it comes from and its attribute text."""

    name: str
    family: str
    provenance: tuple[str, ...]   # 'caffe' (BVLC), 'caffe-fork', 'lasagne'
    doc: str


_DOCS: dict[str, str] = {
    "Input": "attrs: shape (tuple, NCHW incl. batch; batch may be None).",
    "Conv": (
        "attrs: num_output (O), kernel (kh, kw), stride (sh, sw), pad (ph, pw) symmetric, "
        "dilation (dh, dw), group, "
        "bias (bool), flip (bool: True = true convolution, i.e. the kernel must be rotated 180deg "
        "for cross-correlation; Caffe False, Lasagne per layer), activation (None or an Activation "
        "kind dict, see 'Activation'; Lasagne folds nonlinearities into layers). "
        "params: weight (O, I/group, kh, kw) layout 'OIHW'; bias (O,) layout 'O'. "
        "Lasagne untie_biases=True: bias (O, H, W) layout 'OHW' (Keras: a per-position bias constant added after the convolution)."
    ),
    "Deconv": (
        "Caffe Deconvolution (transposed convolution). attrs: num_output (O), kernel (kh, kw), "
        "stride (sh, sw), pad (ph, pw) symmetric (cropped from the full output), dilation (dh, dw), "
        "group, bias (bool). params: weight (I, O/group, kh, kw) layout 'IOHW' (Caffe's blob as "
        "stored); bias (O,) 'O'. y[n, g*O/g + o, s*i + d*a - p, s*j + d*b - p] += "
        "x[n, g*I/g + c, i, j] * weight[g*I/g + c, o, a, b]; out = s*(L-1) + d*(k-1) + 1 - 2p. "
        "flip (bool, False): True = weight[..., ::-1, ::-1] is scattered instead (Lasagne "
        "TransposedConv2DLayer with flip_filters=False, its default: Theano's conv2d gradient "
        "wrt inputs with filter_flip=True); activation (None or an Activation dict, as Conv; "
        "Lasagne folds nonlinearities into the layer)."
    ),
    "Upscale": (
        "Lasagne Upscale2DLayer. attrs: scale (sh, sw), mode ('repeat': nearest neighbour, "
        "y[n, c, i, j] = x[n, c, i // sh, j // sw] | 'dilate': zeros between, "
        "y[n, c, sh*i, sw*j] = x[n, c, i, j], 0 elsewhere). out = (H*sh, W*sw)."
    ),
    "Crop": (
        "Caffe Crop. inputs: [x, reference] (the reference only gives the shape). attrs: axis "
        "(2; negative counts from the end), offsets (list as in Caffe: empty = all 0, one value "
        "for every cropped axis, or one per axis from axis on; see shapes.crop_bounds). "
        "out = x.shape[:axis] + ref.shape[axis:], y = x[..., off_i : off_i + ref.shape[i], ...]."
    ),
    "Dense": (
        "attrs: num_output, axis (flatten from this axis, default 1), bias (bool), activation. "
        "params: weight layout 'OI' (Caffe InnerProduct (N, K); transpose:true is normalised by the "
        "importer to 'IO') or 'IO' (Lasagne (K, N)); bias (N,) 'O'. The input is flattened in C order "
        "over axes >= axis (C, H, W order)."
    ),
    "BatchNorm": (
        "attrs: form ('caffe' | 'lasagne' | 'gist'), axis (channel axis, 1). "
        "caffe: params mean (C,) 'C' = blob0 (mean *sum*), variance (C,) 'C' = blob1 (variance sum), "
        "scale_factor (1,) 'SCALAR' = blob2; attrs eps (1e-5), moving_average_fraction (0.999), "
        "use_global_stats (None|bool). "
        "lasagne: params beta (C,) (absent when None), gamma (C,) (absent when None), mean (C,), "
        "inv_std (C,); attrs epsilon (1e-4), alpha (0.1), axes (tuple, 'auto' resolved). "
        "gist: params mean, std, beta, gamma (stored as in the file, e.g. (1, C, 1, 1)); attrs "
        "epsilon, alpha, activation. Params are stored exactly as read; the rule converts."
    ),
    "Scale": (
        "attrs: axis (1), num_axes (1), bias (bool), two_input (bool: scale comes from inputs[1]). "
        "params: scale (C,) 'C' (absent when two_input), bias (C,) 'C' (absent unless bias)."
    ),
    "Bias": "attrs: axis (1), num_axes (1). params: bias (C,) 'C'.",
    "Activation": (
        "attrs: kind, one of relu (negative_slope, default 0), elu (alpha, 1.0), sigmoid, tanh, "
        "abs, softplus, linear, scaled_tanh (scale_in, scale_out), exp, softmax (axis, 1), "
        "relu6 (min(max(x, 0), 6); Caffe forks' ReLU6). "
        "Conv/Dense/gist-BN 'activation' attrs use the same dict form: {'kind': ..., **kind_attrs}."
    ),
    "PReLU": "attrs: channel_shared (bool). params: slope (C,) 'C' (or (1,) when shared).",
    "Power": "attrs: power (1.0), scale (1.0), shift (0.0): y = (shift + scale*x)^power.",
    "Pool": (
        "attrs: mode ('max' | 'avg'), kernel (kh, kw), stride (sh, sw), pad (ph, pw), "
        "rounding ('floor' | 'caffe_ceil' | 'lasagne_ceil'), "
        "avg_divisor ('caffe': window clipped to L+pad, pad zeros counted | 'inc_pad': full window "
        "kh*kw, clipped to the padded extent L+2p like Theano (so = kh*kw whenever ignore_border=True; "
        "the border windows of ignore_border=False are clipped) | 'exc_pad': only elements inside "
        "the input). MAX ignores padding (Caffe and Theano). "
        "Caffe: rounding caffe_ceil (or floor for round_mode FLOOR) with the '(out-1)*s >= L+p => "
        "out -= 1' rule, avg_divisor caffe. Lasagne ignore_border=True: floor; False: lasagne_ceil."
    ),
    "GlobalPool": "attrs: mode ('max' | 'avg'), keepdims (bool: Caffe global_pooling keeps 1x1).",
    "LRN": (
        "attrs: region ('across' | 'within'), size (n), coeff (the factor multiplying the *sum* of "
        "squares: Caffe across alpha/n, Caffe within alpha/n^2, Lasagne alpha), beta, k (Caffe "
        "WITHIN_CHANNEL ignores its k and uses 1), "
        "source_alpha (the alpha as written in the source, for display). "
        "across: y = x / (k + coeff * sum_{c' in window of size n} x_c'^2)^beta (zero padded). "
        "within: y = x / (k + coeff * sum_{size x size spatial window, zero padded} x^2)^beta."
    ),
    "Eltwise": "attrs: operation ('sum' | 'prod' | 'max'), coeffs (list of float or None).",
    "Concat": "attrs: axis (1).",
    "Flatten": "attrs: axis (1), end_axis (-1).",
    "Reshape": (
        "attrs: shape (list of int incl. batch entry; Caffe semantics: 0 = copy input dim, "
        "-1 = infer), axis (0), num_axes (-1)."
    ),
    "Split": "attrs: none. n outputs, each a copy of the input (outputs name:0, name:1, ...).",
    "Dropout": "attrs: ratio. Identity at inference.",
    "Identity": ("attrs: none (Lasagne linear NonlinearityLayer, etc.); noise_stddev (Lasagne "
                 "GaussianNoiseLayer's sigma: noise added in training only)."),
    "Softmax": "attrs: axis (1).",
    "Pad": "attrs: pad (list of (before, after) for each axis after batch_ndim), value, batch_ndim (2).",
    "Transpose": "attrs: pattern (Lasagne DimshuffleLayer pattern: ints and 'x').",
    "Slice": (
        "attrs: axis, start, stop, step (Python slice semantics, None allowed); or index (int: "
        "that position, the axis is dropped); or slice_points (list, Caffe Slice: num_outputs "
        "pieces split at those points, equal pieces when empty/None)."
    ),
    "Embedding": (
        "Lasagne EmbeddingLayer. attrs: input_size (V), output_size (E). params: weight (V, E) "
        "'VE'. y = weight[int(x)]: out = x.shape + (E,)."
    ),
    "Conv1D": (
        "Lasagne Conv1DLayer on (N, C, L): exactly a 'Conv' over (N, C, 1, L) -- the same attrs "
        "with kernel (1, k), stride (1, s), pad (0, p), params weight (O, I, 1, k) 'OIHW', bias "
        "(O,) -- the output's size-1 axis dropped: (N, O, L')."
    ),
    "Pool1D": (
        "Lasagne Pool1DLayer/MaxPool1DLayer on (N, C, L): a 'Pool' over (N, C, 1, L) (kernel "
        "(1, k), stride (1, s), pad (0, p), rounding, avg_divisor, mode), size-1 axis dropped."
    ),
    "Conv3D": (
        "Lasagne Conv3DLayer (flip_filters True) / Conv3DDNNLayer (False) on (N, C, D, H, W). "
        "attrs: kernel (kd, kh, kw), stride (3), pad (3, symmetric), bias (bool), flip (bool: true "
        "convolution), activation. params: weight (O, I, kd, kh, kw) 'OIDHW', bias (O,) 'O'. "
        "out = (L + 2p - k) // s + 1 per axis."
    ),
    "Pool3D": (
        "Lasagne Pool3DLayer/MaxPool3DLayer/(Max)Pool3DDNNLayer, ignore_border=True. attrs: mode "
        "('max' | 'avg'), kernel (3), stride (3), pad (3), avg_divisor ('inc_pad' | 'exc_pad' | "
        "None). out = (L + 2p - k) // s + 1; max ignores padding."
    ),
    "Recurrent": (
        "Lasagne recurrent layers (lasagne.layers.recurrent), input (batch, time, features...; "
        "trailing axes flattened). inputs: [x, mask (batch, time) if attrs.mask, hid_init "
        "(batch, units) if attrs.hid_init == 'input', cell_init if attrs.cell_init == 'input']. "
        "attrs: cell ('simple' | 'lstm' | 'gru'), units, backwards (scan in reverse; outputs "
        "returned in forward time order), only_return_final (out (batch, units): the last scan "
        "step), mask (bool: h_t = m*step + (1-m)*h_{t-1}, likewise c), hid_init/cell_init "
        "('param': params hid_init/cell_init (1, units) '1U' | 'input'), learn_init (info). "
        "simple (CustomRecurrentLayer/RecurrentLayer with Dense sub-layers): h_t = "
        "activation(hid_activation(h_{t-1} W_hid + b_hid) + in_activation(x_t W_in + b_in)); "
        "params W_in (F, U) 'IO', b_in (U,) (absent = none), W_hid (U, U) 'IO', b_hid (U,). "
        "lstm: gates g in (ingate, forgetgate, cell, outgate), params W_in_to_g (F, U) 'IO', "
        "W_hid_to_g (U, U) 'IO', b_g (U,); peepholes (bool) with W_cell_to_ingate/forgetgate/"
        "outgate (U,): i = act_i(x W_i + b_i + h W_hi + c_{t-1} w_ci), f likewise, "
        "c_t = f c_{t-1} + i act_cell(x W_c + b_c + h W_hc), o = act_o(x W_o + b_o + h W_ho "
        "+ c_t w_co) with outgate_peephole 'before_nonlinearity' (Lasagne 0.2.dev/master) or "
        "o = act_o(x W_o + b_o + h W_ho) + c_t w_co with 'after_nonlinearity' (Lasagne 0.1), "
        "h_t = o * activation(c_t); gate_activations {gate: Activation dict or "
        "None}, activation. gru: gates resetgate, updategate, hidden_update (params as lstm): "
        "r = act_r(x W_r + b_r + h W_hr), u = act_u(...), c = act_h(x W_h + b_h + r (h W_hh)), "
        "h_t = (1 - u) h_{t-1} + u c."
    ),
    # ---- ops of Caffe forks (DeepLab, PSPNet, SSD, ShuffleNet, SENet; provenance 'caffe-fork') ----
    "Interp": (
        "DeepLab/PSPNet Interp: bilinear, align-corners style. attrs: mode ('zoom' | 'shrink' | "
        "'size' | 'shrink_zoom'), zoom_factor, shrink_factor, height, width, pad_beg, pad_end "
        "(<= 0: the input is cropped to [-pad_beg, L + pad_end)). L_eff = L + pad_beg + pad_end; "
        "out: shrink (L_eff-1)//s + 1; zoom L_eff + (L_eff-1)(z-1); size height/width; "
        "shrink_zoom: shrink then zoom. y[o] = (1-l) x[i] + l x[min(i+1, L_eff-1)], r = "
        "float32((L_eff-1)/(out-1)) (0 when out == 1), i = int(r*o), l = r*o - i (float32); "
        "separable: along W first, then H."
    ),
    "Normalize": (
        "SSD Normalize. attrs: across_spatial (bool), channel_shared (bool), eps (1e-10). "
        "params: scale (C,) 'C' or (1,) when channel_shared. across_spatial: y = x / "
        "sqrt(sum_{c,h,w} x^2 + eps) per sample; else y = x / sqrt(sum_c x^2 + eps) per "
        "position; then y *= scale[c] (or scale[0])."
    ),
    "ShuffleChannel": (
        "ShuffleNet channel shuffle. attrs: group (g). x (N, C, ...) viewed as (N, g, C/g, ...), "
        "the two group axes swapped, viewed back: y[:, k*g + j] = x[:, j*(C/g) + k]."
    ),
    "Axpy": (
        "SENet / MobileNet Caffe forks' Axpy. inputs: [a (N, C) or (N, C, 1, ..., 1), x (N, C, ...), "
        "y (the shape of x)]. attrs: none. y_out[n, c, ...] = a[n, c] * x[n, c, ...] + y[n, c, ...] "
        "(a broadcast over the axes after C); out = x.shape."
    ),
    # ---- the rest of BVLC Caffe's layer catalogue ----------------------------------------
    "Exp": "Caffe Exp. attrs: base (-1 = e), scale (1), shift (0): y = base^(shift + scale*x).",
    "Log": "Caffe Log. attrs: base (-1 = e), scale (1), shift (0): y = log_base(shift + scale*x).",
    "Threshold": "attrs: threshold (float, 0.0): y = 1 if x > threshold else 0, element-wise.",
    "Clip": "attrs: min, max: y = max(min, min(x, max)).",
    "Swish": "attrs: beta (1.0): y = x * sigmoid(beta * x).",
    "Reduction": (
        "Caffe Reduction. attrs: operation ('sum' | 'asum' | 'sumsq' | 'mean'), axis (0; all axes "
        "from axis to the end are reduced), coeff (1.0): y = coeff * op(x[..., axis:]) "
        "(mean: sum / count). out = x.shape[:axis]."
    ),
    "MVN": (
        "Caffe MVN. attrs: normalize_variance (True), across_channels (False), eps (1e-9): per "
        "sample (and per channel unless across_channels) y = x - mean, then y / (sqrt(mean(y^2)) + eps)."
    ),
    "Tile": "attrs: axis (1), tiles: y = concatenate([x] * tiles, axis).",
    "ArgMax": (
        "Caffe ArgMax. attrs: out_max_val (False), top_k (1), axis (None = per sample over the "
        "flattened C*H*W). axis: out shape[axis] = top_k, indices (or the values if out_max_val) "
        "in descending order; no axis: out (N, 1 or 2, top_k, 1...) indices then values."
    ),
    "Embed": (
        "Caffe Embed. attrs: num_output, input_dim, bias (bool). params: weight (input_dim, "
        "num_output) 'IO', bias (num_output,) 'O'. y = weight[int(x)] (+ bias); out = x.shape + "
        "(num_output,)."
    ),
    "SPP": (
        "Caffe SPP. attrs: pyramid_height (h), mode ('max' | 'avg'). Level l < h: b = 2^l bins, "
        "kernel k = ceil(L / b), pad = (k*b - L + 1) // 2, stride k, Caffe pooling (caffe_ceil, "
        "caffe divisor). h == 1: the level-0 pooling, out (N, C, 1, 1); else every level "
        "flattened (C, H, W order) and concatenated: out (N, C * sum of its pooled sizes)."
    ),
    "CaffeRecurrent": (
        "Caffe's own LSTM / RNN. inputs: [x (T, N, ...) time-major, cont (T, N)]. attrs: cell "
        "('lstm' | 'rnn'), num_output (H). h_0 = c_0 = 0; per step t: h' = cont_t * h_{t-1}. "
        "lstm: params W_xc (4H, I) 'OI', b_c (4H,), W_hc (4H, H) 'OI'; gates = W_xc x_t + b_c + "
        "W_hc h' split as i, f, o, g; i, f, o = sigmoid, g = tanh; c_t = cont_t * f * c_{t-1} + i * g; "
        "h_t = o * tanh(c_t); out h (T, N, H). rnn: params W_xh (H, I), b_h, W_hh (H, H), W_ho (H, H), "
        "b_o; h_t = tanh(W_xh x_t + b_h + W_hh h'); out o_t = tanh(W_ho h_t + b_o) (T, N, H)."
    ),
    "Im2col": (
        "Caffe Im2col. attrs: kernel (kh, kw), pad, stride, dilation (pairs). y[n, (c*kh + i)*kw + j, "
        "oy, ox] = x[n, c, oy*sh - ph + i*dh, ox*sw - pw + j*dw] (0 outside); out (N, C*kh*kw, Ho, Wo) "
        "with the convolution output size."
    ),
    # ---- the rest of Lasagne master's lasagne.layers ------------------------------------
    "Standardize": (
        "Lasagne StandardizationLayer. attrs: axes (source axes, >= 1), epsilon (1e-4): "
        "y = (x - mean(x, axes)) / sqrt(var(x, axes) + epsilon) (biased variance)."
    ),
    "FeaturePool": (
        "Lasagne FeaturePoolLayer. attrs: axis, pool_size, mode (mean|max|min|sum|prod|var|std): "
        "groups of pool_size consecutive features along axis reduced to one; out axis = C / pool_size."
    ),
    "FeatureWTA": (
        "Lasagne FeatureWTALayer. attrs: axis, pool_size: in each group of pool_size consecutive "
        "features along axis, the first maximum is kept, the others set to 0."
    ),
    "LasagneReduce": (
        "Lasagne GlobalPoolLayer with any pool function. attrs: mode (mean|max|min|sum|prod|var|std), "
        "axes (source axes reduced, e.g. [2, 3]); out (N, C)."
    ),
    "Upscale1D": (
        "Lasagne Upscale1DLayer on (N, C, L). attrs: scale (a), mode ('repeat': each value a times; "
        "'dilate': the value then a-1 zeros): out (N, C, L*a)."
    ),
    "LocallyConnected": (
        "Lasagne LocallyConnected2DLayer (stride 1, 'same'). attrs: kernel (kh, kw odd), flip, "
        "channelwise, bias, activation. params: weight (O, C, kh, kw, H, W) or channelwise "
        "(O, kh, kw, H, W) 'LC', bias (O,) 'O' or (O, H, W) 'OHW'. y[o, h, w] = sum_{c,i,j} "
        "x[c, h+i-kh//2, w+j-kw//2] * W[o, c, i', j', h, w] (0 outside; i' = kh-1-i when flip)."
    ),
    "LasagneSPP": (
        "Lasagne SpatialPyramidPooling(DNN)Layer. attrs: pool_dims (list of n), mode ('max'|'avg'), "
        "implementation ('kaiming': bins [floor(r*H/n), ceil((r+1)*H/n)); 'fast'/cuDNN: window "
        "ceil(H/n), stride floor(H/n)): out (N, C, sum n*n), levels in order, bins row-major."
    ),
    "CropMerge": (
        "Lasagne merge with autocrop / other merge functions. attrs: kind (concat|sum|add|mul|maximum|"
        "minimum|sub), axis (concat), coeffs (sum), cropping (per axis None|'lower'|'upper'|'center', "
        "or None): every input cropped to the smallest size on each cropped axis, then merged "
        "(binary functions folded left to right)."
    ),
    "Custom": (
        "A layer Migrator does not know. attrs: class_name, plus whatever could be recorded. "
        "params keep their names and shapes. Always reported as unsupported, never dropped."
    ),
}

# op -> (family, provenance)
_FAMILY: dict[str, tuple[str, tuple[str, ...]]] = {
    "Input": ("io", ('caffe', 'lasagne')),
    "Conv": ("conv", ('caffe', 'lasagne')),
    "Deconv": ("conv", ('caffe', 'lasagne')),
    "Upscale": ("resize", ('lasagne',)),
    "Crop": ("layout", ('caffe',)),
    "Dense": ("dense", ('caffe', 'lasagne')),
    "BatchNorm": ("norm", ('caffe', 'lasagne')),
    "Scale": ("norm", ('caffe',)),
    "Bias": ("norm", ('caffe',)),
    "Activation": ("activation", ('caffe', 'lasagne')),
    "PReLU": ("activation", ('caffe', 'lasagne')),
    "Power": ("activation", ('caffe',)),
    "Pool": ("pool", ('caffe', 'lasagne')),
    "GlobalPool": ("pool", ('caffe', 'lasagne')),
    "LRN": ("norm", ('caffe', 'lasagne')),
    "Eltwise": ("merge", ('caffe', 'lasagne')),
    "Concat": ("merge", ('caffe', 'lasagne')),
    "Flatten": ("layout", ('caffe', 'lasagne')),
    "Reshape": ("layout", ('caffe', 'lasagne')),
    "Split": ("layout", ('caffe',)),
    "Dropout": ("activation", ('caffe', 'lasagne')),
    "Identity": ("activation", ('caffe', 'lasagne')),
    "Softmax": ("activation", ('caffe', 'lasagne')),
    "Pad": ("layout", ('caffe', 'lasagne')),
    "Transpose": ("layout", ('caffe', 'lasagne')),
    "Slice": ("layout", ('caffe', 'lasagne')),
    "Embedding": ("embedding", ('lasagne',)),
    "Conv1D": ("conv", ('lasagne',)),
    "Pool1D": ("pool", ('lasagne',)),
    "Conv3D": ("conv", ('lasagne',)),
    "Pool3D": ("pool", ('lasagne',)),
    "Recurrent": ("recurrent", ('lasagne',)),
    "Interp": ("resize", ('caffe-fork',)),
    "Normalize": ("norm", ('caffe-fork',)),
    "ShuffleChannel": ("layout", ('caffe-fork',)),
    "Axpy": ("merge", ('caffe-fork',)),
    "Exp": ("activation", ('caffe',)),
    "Log": ("activation", ('caffe',)),
    "Threshold": ("activation", ('caffe',)),
    "Clip": ("activation", ('caffe',)),
    "Swish": ("activation", ('caffe',)),
    "Reduction": ("reduce", ('caffe',)),
    "MVN": ("norm", ('caffe',)),
    "Tile": ("layout", ('caffe',)),
    "ArgMax": ("reduce", ('caffe',)),
    "Embed": ("embedding", ('caffe',)),
    "SPP": ("pool", ('caffe',)),
    "CaffeRecurrent": ("recurrent", ('caffe',)),
    "Im2col": ("conv", ('caffe',)),
    "Standardize": ("norm", ('lasagne',)),
    "FeaturePool": ("pool", ('lasagne',)),
    "FeatureWTA": ("pool", ('lasagne',)),
    "LasagneReduce": ("reduce", ('lasagne',)),
    "Upscale1D": ("resize", ('lasagne',)),
    "LocallyConnected": ("conv", ('lasagne',)),
    "LasagneSPP": ("pool", ('lasagne',)),
    "CropMerge": ("merge", ('lasagne',)),
    "Custom": ("io", ()),
}

OP_SPECS: dict[str, OpSpec] = {
    name: OpSpec(name, _FAMILY[name][0], _FAMILY[name][1], doc) for name, doc in _DOCS.items()
}

#: op -> its attribute documentation (the text the contributor guide and ``migrator layers`` show)
OPS: dict[str, str] = dict(_DOCS)


def family_of(op: str) -> str:
    """The family of a canonical op (KeyError for an op the catalogue does not know)."""
    return OP_SPECS[op].family


def ops_of_family(family: str) -> list[str]:
    return [name for name, spec in OP_SPECS.items() if spec.family == family]


assert set(_FAMILY) == set(_DOCS), "every op needs a family"
assert {spec.family for spec in OP_SPECS.values()} <= set(FAMILIES)
