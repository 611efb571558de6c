"""The importers' registries: one entry per Caffe layer type / Lasagne class, and the tables
derived from them (SUPPORTED_TYPES, FORK_TYPES, KNOWN, REFUSED_CLASSES, SOURCE_TYPE_OPS)."""
from __future__ import annotations

import pytest

from migrator.core import coverage
from migrator.core.importers import caffe as C
from migrator.core.importers import lasagne as LS
from migrator.core.importers.caffe.registry import LAYER_HANDLERS, layer_handler
from migrator.core.importers.lasagne.registry import CONVERTERS, converter, refuse
from migrator.core.mapping.overrides import SOURCE_TYPE_OPS
from migrator.core.ops import OP_SPECS
from migrator.core.registry import RegistrationError


def _handler(b, lp):   # pragma: no cover - never called
    return "Identity", {}, {}, 1


def _converter(L, in_shapes):   # pragma: no cover - never called
    return "Identity", {}, {}


def test_a_caffe_type_registered_twice_raises():
    with pytest.raises(RegistrationError, match="Convolution"):
        layer_handler("Convolution", ops=("Conv",))(_handler)
    with pytest.raises(RegistrationError, match="Interp"):       # a fork type alike
        layer_handler("Interp", ops=("Interp",), fork="DeepLab")(_handler)
    layer_handler("MigratorTestType", ops=("Identity",))(_handler)
    try:
        with pytest.raises(RegistrationError, match="MigratorTestType"):
            layer_handler("MigratorTestType", ops=("Identity",))(_handler)
    finally:
        LAYER_HANDLERS.remove("MigratorTestType")
    assert "MigratorTestType" not in LAYER_HANDLERS


def test_a_lasagne_class_registered_twice_raises():
    with pytest.raises(RegistrationError, match="DenseLayer"):
        converter("DenseLayer", ops=("Dense",))(_converter)
    with pytest.raises(RegistrationError, match="ExpressionLayer"):
        refuse("ExpressionLayer", "again")
    with pytest.raises(RegistrationError, match="LSTMLayer"):
        converter("LSTMLayer", ops=("Recurrent",))(_converter)


def test_caffe_tables_are_derived_from_the_registry():
    assert set(C.SUPPORTED_TYPES) == set(LAYER_HANDLERS) | {"Input"}
    assert set(C.FORK_TYPES) == {t for t, h in LAYER_HANDLERS.items() if h.fork}
    assert set(C.FORK_TYPES) >= {"Interp", "ReLU6", "Upsample", "Permute", "Normalize", "ShuffleChannel",
                                 "ConvolutionDepthwise", "DepthwiseConvolution"}
    assert not set(C.FORK_TYPES) & set(coverage.BVLC_CAFFE_TYPES)      # fork types are not BVLC
    assert not set(C.SUPPORTED_TYPES) & (set(C.REFUSED_TYPES) | C.DATA_TYPES | C.SINK_TYPES
                                         | C.SHAPED_DATA_TYPES)
    for t, h in LAYER_HANDLERS.items():
        assert h.type == t and callable(h.fn) and h.ops
        lo, hi = h.bottoms
        assert 1 <= lo <= hi


def test_lasagne_tables_are_derived_from_the_registry():
    assert set(LS.KNOWN) == set(CONVERTERS)
    assert LS.REFUSED_CLASSES == {c: e.refused for c, e in CONVERTERS.items() if e.refused}
    assert set(LS.REFUSED_CLASSES) == {"ExpressionLayer", "InverseLayer", "TransformerLayer",
                                       "TPSTransformerLayer"}
    for cls, e in CONVERTERS.items():
        assert e.cls == cls
        assert (e.fn is None) == (e.refused is not None)
        if e.refused:
            assert not e.ops


def test_every_declared_op_exists_and_lives_in_its_family_module():
    for t, h in LAYER_HANDLERS.items():
        for op in h.ops:
            assert op in OP_SPECS, (t, op)
        family = OP_SPECS[h.ops[0]].family
        assert h.fn.__module__ == f"migrator.core.importers.caffe.layers.{family}", (t, h.fn.__module__)
    for cls, e in CONVERTERS.items():
        for op in e.ops:
            assert op in OP_SPECS, (cls, op)
        if e.ops:
            family = OP_SPECS[e.ops[0]].family
            assert e.fn.__module__ == f"migrator.core.importers.lasagne.{family}", (cls, e.fn.__module__)


def test_source_type_ops_cover_every_single_op_type():
    for t, h in LAYER_HANDLERS.items():
        if len(h.ops) == 1:
            assert SOURCE_TYPE_OPS.get(t) == h.ops[0], t
    for cls, e in CONVERTERS.items():
        if len(e.ops) == 1:
            for name in (cls, *e.aliases):
                assert SOURCE_TYPE_OPS.get(name) == e.ops[0], name
    assert SOURCE_TYPE_OPS["LSTMLayer"] == "Recurrent"
    assert SOURCE_TYPE_OPS["LSTM"] == "CaffeRecurrent"
    assert SOURCE_TYPE_OPS["Interp"] == "Interp"
    assert SOURCE_TYPE_OPS["Reduction"] == "Reduction"
    assert SOURCE_TYPE_OPS["Deconv2DLayer"] == "Deconv"          # Lasagne's alias
    # types that can import as several ops resolve to their usual one
    assert SOURCE_TYPE_OPS["Pooling"] == "Pool" and SOURCE_TYPE_OPS["GlobalPoolLayer"] == "GlobalPool"
    for t, op in SOURCE_TYPE_OPS.items():
        assert op in OP_SPECS, (t, op)
