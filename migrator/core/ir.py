"""Framework-neutral intermediate representation.

A :class:`Graph` is an ordered list of :class:`Node` objects (topological order, inputs
before consumers).  Every node has a *canonical op kind* (``Node.op``, one of
:data:`OPS`), attributes in canonical form (documented in :data:`OPS`), named
parameters (:class:`Param`, each with a layout tag) and provenance (source file, source
layer name and type, source top/blob names).

Tensors are named by the node that produces them: a single-output node's output tensor
id is the node name; a node with several outputs (Split) produces ``name:0``,
``name:1``, ...  Because ids are per *node*, Caffe's in-place layers (``top ==
bottom``) are unambiguous: ``relu1`` writing into blob ``conv1`` produces tensor
``relu1``.

All source semantics are NCHW (``N, C, spatial...``); the Keras side is channels-last.
Shapes include the batch dimension as given by the source (Caffe ``input_dim`` often 1
or 10; Lasagne ``None`` is stored as ``None``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import MigratorError

# --------------------------------------------------------------------------------------
# The canonical op catalogue.  Importers MUST produce exactly these attrs (defaults
# filled in); reference kernels and mapping rules may rely on them.
# --------------------------------------------------------------------------------------
OPS: dict[str, str] = {
    "Input": "attrs: shape (tuple, NCHW incl. batch; batch may be None).",
    "Conv": (
        "attrs: num_output (O), kernel (kh, kw), stride (sh, sw), pad (ph, pw) symmetric, "
        "dilation (dh, dw), group, "
        "bias (bool), flip (bool: True = true convolution, i.e. the kernel must be rotated 180deg "
        "for cross-correlation; Caffe False, Lasagne per layer), activation (None or an Activation "
        "kind dict, see 'Activation'; Lasagne folds nonlinearities into layers). "
        "params: weight (O, I/group, kh, kw) layout 'OIHW'; bias (O,) layout 'O'. "
        "Lasagne untie_biases=True: bias (O, H, W) layout 'OHW' (flagged unsupported by the rule)."
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
    "Identity": "attrs: none (Lasagne linear NonlinearityLayer, etc.).",
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
    # ---- Caffe fork layer types (importers/caffe_forks.py; shapes_forks.py; kernels_forks.py)
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
    # ---- BVLC Caffe catalogue (issue 14; rules in mapping/rules/caffe_catalogue.py) ----
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
    # ---- the rest of Lasagne master's lasagne.layers (issue 14) -----------------------
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

ACTIVATION_KINDS = ("relu", "elu", "sigmoid", "tanh", "abs", "softplus", "linear",
                    "scaled_tanh", "exp", "softmax", "relu6")


@dataclass
class Param:
    """A named parameter array with a layout tag ('OIHW', 'OI', 'IO', 'O', 'C', 'SCALAR', ...)."""

    name: str
    value: np.ndarray
    layout: str = ""
    source_name: str | None = None   # the name in the source file (e.g. 'blobs[1]', 'W')

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


@dataclass
class Provenance:
    file: str | None = None          # the file that defined the layer (prototxt / builder script)
    layer: str | None = None         # source layer name
    type: str | None = None          # source layer type/class ('Convolution', 'Conv2DLayer')
    tops: list[str] = field(default_factory=list)      # Caffe top blob names
    bottoms: list[str] = field(default_factory=list)   # Caffe bottom blob names
    weights_file: str | None = None  # caffemodel / params file the weights came from


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)    # tensor ids
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)
    num_outputs: int = 1
    out_shapes: list[tuple | None] = field(default_factory=list)   # filled by shape inference

    @property
    def outputs(self) -> list[str]:
        if self.num_outputs == 1:
            return [self.name]
        return [f"{self.name}:{i}" for i in range(self.num_outputs)]

    @property
    def out_shape(self) -> tuple | None:
        return self.out_shapes[0] if self.out_shapes else None

    @property
    def source_type(self) -> str:
        return self.provenance.type or self.op

    def param_count(self) -> int:
        return int(sum(p.value.size for p in self.params.values()))

    def p(self, name: str) -> np.ndarray | None:
        prm = self.params.get(name)
        return None if prm is None else prm.value


@dataclass
class Graph:
    framework: str                      # 'caffe' | 'lasagne'
    nodes: list[Node] = field(default_factory=list)
    name: str = ""
    files: list[str] = field(default_factory=list)   # source files (architecture first)
    meta: dict[str, Any] = field(default_factory=dict)  # mean values, synset words, warnings, ...
    warnings: list[str] = field(default_factory=list)

    # ---- lookup -------------------------------------------------------------------
    def __post_init__(self):
        self._index: dict[str, Node] | None = None

    def _idx(self) -> dict[str, Node]:
        if self._index is None or len(self._index) != len(self.nodes):
            self._index = {n.name: n for n in self.nodes}
        return self._index

    def node(self, name: str) -> Node:
        try:
            return self._idx()[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._idx()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def producer(self, tensor_id: str) -> Node:
        return self.node(tensor_id.split(":")[0] if tensor_id not in self._idx() else tensor_id)

    def consumers(self, tensor_id: str) -> list[Node]:
        return [n for n in self.nodes if tensor_id in n.inputs]

    @property
    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "Input"]

    @property
    def output_tensors(self) -> list[str]:
        """Tensors nobody consumes (the network outputs), in node order."""
        used = {t for n in self.nodes for t in n.inputs}
        return [t for n in self.nodes for t in n.outputs if t not in used]

    def tensor_shape(self, tensor_id: str) -> tuple | None:
        node = self.producer(tensor_id)
        i = node.outputs.index(tensor_id)
        return node.out_shapes[i] if i < len(node.out_shapes) else None

    def last_use(self) -> dict[str, int]:
        """tensor id -> index of the last node consuming it (for freeing memory early)."""
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for t in n.inputs:
                last[t] = i
        return last

    # ---- validation ---------------------------------------------------------------
    def validate(self, file: str | None = None) -> None:
        """Check the structure: unique names, known inputs, topological order, no cycle."""
        seen: set[str] = set()
        produced: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise MigratorError("duplicate layer name", file=file, layer=n.name)
            seen.add(n.name)
            for t in n.inputs:
                if t not in produced:
                    raise MigratorError(f"input '{t}' is not produced by any earlier layer "
                                        "(undefined bottom or cycle)", file=file, layer=n.name)
            produced.update(n.outputs)

    def infer_shapes(self, file: str | None = None) -> None:
        from .shapes import infer_shapes
        infer_shapes(self, file=file)

    def summary_rows(self) -> Iterable[dict[str, Any]]:
        for n in self.nodes:
            yield {"name": n.name, "type": n.source_type, "op": n.op,
                   "inputs": list(n.inputs), "shape": n.out_shape,
                   "params": {k: list(p.shape) for k, p in n.params.items()},
                   "param_count": n.param_count()}


def topological_sort(nodes: list[Node], file: str | None = None) -> list[Node]:
    """Stable topological order (keeps the given order where possible); raises on a cycle
    or an undefined input, naming the layer."""
    producer: dict[str, Node] = {}
    for n in nodes:
        for t in n.outputs:
            producer[t] = n
    for n in nodes:
        for t in n.inputs:
            if t not in producer:
                raise MigratorError(f"input '{t}' is not produced by any layer (undefined bottom)",
                                    file=file, layer=n.name)
    order: list[Node] = []
    state: dict[str, int] = {}   # 0 unvisited, 1 visiting, 2 done

    def visit(n: Node, stack: list[str]):
        st = state.get(n.name, 0)
        if st == 2:
            return
        if st == 1:
            cyc = " -> ".join(stack[stack.index(n.name):] + [n.name])
            raise MigratorError(f"cyclic graph: {cyc}", file=file, layer=n.name)
        state[n.name] = 1
        stack.append(n.name)
        for t in n.inputs:
            visit(producer[t], stack)
        stack.pop()
        state[n.name] = 2
        order.append(n)

    import sys
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * len(nodes) + 1000))
    try:
        for n in nodes:
            visit(n, [])
    finally:
        sys.setrecursionlimit(old)
    return order
