"""Shape inference: closed-form expectations worked out by hand, errors naming file and layer."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.core.errors import MigratorError
from migrator.core.ir import Graph, Node, Param
from migrator.core.shapes import infer_shapes, pool_out_len, reshape_caffe


def _inp(shape, name="data"):
    return Node(name, "Input", attrs={"shape": shape})


def _conv(name, src, w_shape, k=(3, 3), s=(1, 1), p=(0, 0), d=(1, 1), group=1):
    return Node(name, "Conv", [src], attrs={"kernel": k, "stride": s, "pad": p, "dilation": d, "group": group,
                                                 "bias": False, "flip": False, "activation": None},
                params={"weight": Param("weight", np.zeros(w_shape, np.float32), "OIHW")})


def _pool(name, src, k, s, p, rounding, mode="max"):
    return Node(name, "Pool", [src], attrs={"mode": mode, "kernel": k, "stride": s, "pad": p, "rounding": rounding,
                                                 "avg_divisor": "caffe"})


def _shapes(nodes, file="net.prototxt"):
    g = Graph("caffe", nodes)
    infer_shapes(g, file=file)
    return {n.name: n.out_shapes for n in g}


# --- pooling output lengths, worked by hand -------------------------------------------
def test_pool_lengths_hand_cases():
    # 112, k3 s2: caffe ceil ceil(109/2)+1 = 55+1 = 56; floor 54+1 = 55
    assert pool_out_len(112, 3, 2, 0, "caffe_ceil") == 56
    assert pool_out_len(112, 3, 2, 0, "floor") == 55
    # 5, k3 s2 p1: ceil((5+2-3)/2)+1 = 3; (3-1)*2 = 4 >= 5+1? no -> 3
    assert pool_out_len(5, 3, 2, 1, "caffe_ceil") == 3
    # 6, k2 s2 p1: ceil((6+2-2)/2)+1 = 4; (4-1)*2 = 6 >= 6+1? no -> 4
    assert pool_out_len(6, 2, 2, 1, "caffe_ceil") == 4
    # 4, k3 s3 p1: ceil((4+2-3)/3)+1 = 2; (2-1)*3 = 3 >= 5? no -> 2
    assert pool_out_len(4, 3, 3, 1, "caffe_ceil") == 2
    # 3, k2 s2 p1: ceil((3+2-2)/2)+1 = 3; (3-1)*2 = 4 >= 3+1 -> yes, out = 2 (the pad rule)
    assert pool_out_len(3, 2, 2, 1, "caffe_ceil") == 2
    # lasagne ignore_border=False: 5 with k2 s2: ceil(5/2) = 3; k3 s1: max(0, ceil(2/1)) + 1 = 3
    assert pool_out_len(5, 2, 2, 0, "lasagne_ceil") == 3
    assert pool_out_len(5, 3, 1, 0, "lasagne_ceil") == 3
    # 7 with k3 s2 (s < k): max(0, ceil(4/2)) + 1 = 3 (Caffe ceil agrees)
    assert pool_out_len(7, 3, 2, 0, "lasagne_ceil") == 3
    assert pool_out_len(7, 3, 2, 0, "caffe_ceil") == 3
    # k larger than input: lasagne gives 1 window
    assert pool_out_len(2, 3, 1, 0, "lasagne_ceil") == 1


@given(L=st.integers(1, 60), k=st.integers(1, 7), s=st.integers(1, 5))
@settings(max_examples=300, deadline=None)
def test_lasagne_ceil_equals_caffe_ceil_without_pad(L, k, s):
    # semantics.md: Lasagne ignore_border=False (pad 0) is Caffe's ceil mode -- only while
    # stride <= kernel: with s > k Caffe starts a window past the end (L=2, k=1, s=2: 2 vs 1)
    if k > L or s > k:
        return
    assert pool_out_len(L, k, s, 0, "lasagne_ceil") == pool_out_len(L, k, s, 0, "caffe_ceil")


@given(L=st.integers(1, 60), k=st.integers(1, 7), s=st.integers(1, 5), p=st.integers(0, 6))
@settings(max_examples=300, deadline=None)
def test_caffe_ceil_windows_start_inside(L, k, s, p):
    if p >= k or L + 2 * p < k:
        return
    out = pool_out_len(L, k, s, p, "caffe_ceil")
    flo = pool_out_len(L, k, s, p, "floor")
    assert flo <= out <= flo + 1
    # with pad, every window starts inside the image (the pad rule); without pad Caffe can
    # start one past the end when s > k (L=2, k=1, s=2 gives 2 windows)
    if p > 0 or s <= k:
        assert (out - 1) * s - p < L
    if s <= k:   # ... and the windows reach the last real pixel
        assert (out - 1) * s - p + k >= L


def test_network_shapes_hand_computed():
    nodes = [
        _inp((None, 3, 17, 19)),
        # (17+2-3)//2+1 = 9, (19+2-3)//2+1 = 10
        _conv("c1", "data", (8, 3, 3, 3), s=(2, 2), p=(1, 1)),
        # grouped, dilated 2, rectangular 3x5: eff 5x9; (9+2*2-5)+1 = 9, (10+2*4-9)+1 = 10
        _conv("c2", "c1", (4, 4, 3, 5), k=(3, 5), p=(2, 4), d=(2, 2), group=2),
        # ceil: ceil((9+2-3)/2)+1 = 5, ceil((10+2-3)/2)+1 = 6
        _pool("p1", "c2", (3, 3), (2, 2), (1, 1), "caffe_ceil"),
        Node("gp", "GlobalPool", ["p1"], attrs={"mode": "avg", "keepdims": True}),
        Node("fl", "Flatten", ["p1"], attrs={"axis": 1, "end_axis": -1}),
        Node("fc", "Dense", ["p1"], attrs={"num_output": 7, "axis": 1, "bias": False},
             params={"weight": Param("weight", np.zeros((4 * 5 * 6, 7)), "IO")}),
        Node("sp", "Split", ["fc"], num_outputs=2),
        Node("cat", "Concat", ["sp:0", "sp:1"], attrs={"axis": 1}),
        Node("rs", "Reshape", ["cat"], attrs={"shape": [0, 2, -1], "axis": 0, "num_axes": -1}),
        Node("tr", "Transpose", ["rs"], attrs={"pattern": [0, 2, "x", 1]}),
        Node("pad", "Pad", ["p1"], attrs={"pad": [(1, 2), (0, 3)], "value": 0.0, "batch_ndim": 2}),
        Node("sl", "Slice", ["p1"], attrs={"axis": 1, "start": 1, "stop": None, "step": 2}),
        Node("cs", "Slice", ["p1"], attrs={"axis": 1, "slice_points": [1, 3]}, num_outputs=3),
    ]
    s = _shapes(nodes)
    assert s["c1"] == [(None, 8, 9, 10)]
    assert s["c2"] == [(None, 4, 9, 10)]
    assert s["p1"] == [(None, 4, 5, 6)]
    assert s["gp"] == [(None, 4, 1, 1)]
    assert s["fl"] == [(None, 120)]
    assert s["fc"] == [(None, 7)]
    assert s["sp"] == [(None, 7), (None, 7)]
    assert s["cat"] == [(None, 14)]
    assert s["rs"] == [(None, 2, 7)]
    assert s["tr"] == [(None, 7, 1, 2)]
    assert s["pad"] == [(None, 4, 8, 9)]
    assert s["sl"] == [(None, 2, 5, 6)]
    assert s["cs"] == [(None, 1, 5, 6), (None, 2, 5, 6), (None, 1, 5, 6)]


def test_reshape_caffe_semantics():
    # examples from Caffe's ReshapeParameter documentation, worked by hand
    assert reshape_caffe((2, 8), [0, 2, 4]) == (2, 2, 4)
    assert reshape_caffe((2, 3, 4, 5), [0, -1]) == (2, 60)
    assert reshape_caffe((2, 8), [2, 4], axis=1, num_axes=1) == (2, 2, 4)
    assert reshape_caffe((2, 8), [1], axis=1, num_axes=0) == (2, 1, 8)
    assert reshape_caffe((2, 8), [1], axis=-1, num_axes=0) == (2, 8, 1)
    assert reshape_caffe((None, 6, 4), [0, -1, 2]) == (None, 12, 2)
    with pytest.raises(ValueError):
        reshape_caffe((2, 7), [0, 2, -1])


def test_custom_gives_unknown_and_downstream_does_not_crash():
    nodes = [_inp((1, 3, 8, 8)), Node("weird", "Custom", ["data"], attrs={"class_name": "Foo"}),
             Node("r", "Activation", ["weird"], attrs={"kind": "relu", "negative_slope": 0.0})]
    s = _shapes(nodes)
    assert s["weird"] == [None] and s["r"] == [None]


@pytest.mark.parametrize("nodes,needle", [
    ([_inp((1, 3, 8, 8)), _inp((1, 3, 8, 9), "b"),
      Node("sum", "Eltwise", ["data", "b"], attrs={"operation": "sum", "coeffs": None})], "different shapes"),
    ([_inp((1, 3, 8, 8)), _inp((1, 3, 9, 8), "b"),
      Node("cat", "Concat", ["data", "b"], attrs={"axis": 1})], "do not match"),
    ([_inp((1, 3, 4, 4)), Node("fc", "Dense", ["data"], attrs={"num_output": 2, "axis": 1},
                                params={"weight": Param("weight", np.zeros((2, 47)), "OI")})], "47"),
    ([_inp((1, 4, 8, 8)), _conv("cv", "data", (4, 3, 3, 3), group=1)], "input channels"),
    ([_inp((1, 4, 8, 8)), _conv("cv", "data", (4, 4, 3, 3), group=2)], "input channels"),
    ([_inp((1, 3, 4, 4)), Node("rs", "Reshape", ["data"], attrs={"shape": [0, 5, -1]})], "reshape"),
    ([_inp((1, 3, 2, 2)), _conv("cv", "data", (4, 3, 3, 3))], "too small"),
])
def test_errors_name_file_and_layer(nodes, needle):
    with pytest.raises(MigratorError) as ei:
        _shapes(nodes, file="model.prototxt")
    msg = str(ei.value)
    assert msg.startswith("model.prototxt: layer '")
    assert needle in msg
    assert "\n" not in msg
