"""One flow for both fronts: a mapping file means the same through the CLI (``migrator
--mapping``) and through the GUI's document (``document.load_model``): its overrides, its
``input_shapes`` and its ``accept_unknown`` all take effect in both."""
from __future__ import annotations

import json

import pytest

from migrator import cli
from migrator.core import document
from migrator.core.errors import UnsupportedLayerError, unsupported_layers_error
from migrator.core.flow import Flow, FlowOptions
from tests.core import bn_frob_weights

PROTOTXT = """name: "bn_frob"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" frob: 1
        batch_norm_param { use_global_stats: true } }
"""


@pytest.fixture
def model(tmp_path):
    weights = bn_frob_weights(tmp_path)
    proto = tmp_path / "bn.prototxt"
    proto.write_text(PROTOTXT)
    mapping = tmp_path / "m.mapping.json"
    mapping.write_text(json.dumps({"version": 1, "layers": {"bn": {"epsilon": 0.001}},
                                   "accept_unknown": ["bn.frob"],
                                   "input_shapes": {"data": [1, 3, 12, 10]}}))
    return str(proto), weights, str(mapping)


def _summary(graph, plan):
    return {"inputs": {n.name: tuple(n.attrs["shape"]) for n in graph.input_nodes},
            "shapes": {n.name: tuple(n.out_shape) for n in graph.nodes},
            "mappings": [(m.source, m.supported, m.error, dict(m.options), m.overridden,
                          list(m.notes), [s.class_name for s in m.layers]) for m in plan.mappings],
            "unknown_fields": (graph.meta.get("caffe") or {}).get("unknown_fields")}


def test_mapping_file_means_the_same_in_cli_and_document(model):
    proto, weights, mapping = model
    args = cli.build_parser().parse_args(["inspect", proto, weights, "--mapping", mapping])
    via_cli = cli._flow(args)
    res = document.load_model([proto, weights], mapping_path=mapping, unknown="collect", build=False)
    doc = document.Document()
    doc.set_opened(res["paths"], res["graph"], res["plan"], res["overrides"], res["model"],
                   res["build_error"], res["mapping_path"])

    a, b = _summary(via_cli.graph, via_cli.plan), _summary(doc.graph, doc.plan)
    assert a == b
    assert a["inputs"] == {"data": (1, 3, 12, 10)}            # the mapping file's input_shapes
    bn = doc.mapping("bn")
    assert bn.supported and bn.options["epsilon"] == pytest.approx(0.001)   # its override
    assert any("semantics unverified" in n for n in bn.notes)              # its accept_unknown
    assert via_cli.overrides.to_dict() == res["overrides"].to_dict()
    assert res["build_error"] is None


def test_document_without_the_mapping_file_marks_the_unknown_field(model):
    proto, weights, _mapping = model
    res = document.load_model([proto, weights], unknown="collect", build=False)
    assert [m.source for m in res["plan"].unsupported] == ["bn"]
    assert res["graph"].node("data").attrs["shape"] == (1, 3, 8, 8)
    err = unsupported_layers_error(res["plan"])
    assert isinstance(err, UnsupportedLayerError) and "'bn'" in str(err)
    assert res["build_error"] == str(err)


def test_flow_runs_every_step(model, tmp_path):
    proto, weights, mapping = model
    fl = Flow(FlowOptions(paths=[proto, weights], mapping_path=mapping, output=str(tmp_path / "m.keras"),
                          report_path=str(tmp_path / "m.report.json")))
    steps = []
    result = fl.compare(progress=lambda f, msg: steps.append(msg))
    assert result.passed and fl.model is not None and fl.x.shape == (1, 3, 12, 10)
    assert "building the Keras model" in steps
    written, records = fl.export()
    assert str(tmp_path / "m.keras") in written and records and all(r["passed"] for r in records)
    rep = json.loads((tmp_path / "m.report.json").read_text())
    assert rep["overrides"]["accept_unknown"] == ["bn.frob"]
    assert rep["source"]["input_shapes"]["data"]["given"] == [1, 3, 12, 10]
    assert rep["verification"]["passed"] is True
