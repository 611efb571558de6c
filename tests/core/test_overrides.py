"""The mapping file: load/save/validate/merge of user overrides."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.ir import Graph, Node, Param, Provenance
from migrator.core.mapping.overrides import Overrides
from migrator.core.mapping.planner import make_plan


def write(tmp_path, obj, name="map.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def small_graph():
    C = 2
    bn = Node("bn1", "BatchNorm", ["data"],
              attrs={"form": "caffe", "axis": 1, "eps": 1e-5, "moving_average_fraction": 0.999,
                     "use_global_stats": None},
              params={"mean": Param("mean", np.zeros(C, np.float32)),
                      "variance": Param("variance", np.ones(C, np.float32)),
                      "scale_factor": Param("scale_factor", np.ones(1, np.float32))},
              provenance=Provenance(layer="bn1", type="BatchNorm"))
    g = Graph("caffe", [Node("data", "Input", attrs={"shape": (1, C, 2, 2)}), bn], files=["n.prototxt"])
    g.infer_shapes()
    return g


def test_roundtrip_save_load(tmp_path):
    ov = Overrides()
    ov.set("epsilon", 1e-3, layer="bn1")
    ov.set("fuse_scale", False, kind="BatchNorm")
    ov.set("variance", "raw", kind="BatchNormLayer")
    path = ov.save(str(tmp_path / "m.json"))
    with open(path) as f:
        data = json.load(f)
    assert data == {"version": 1, "layers": {"bn1": {"epsilon": 1e-3}},
                    "kinds": {"BatchNorm": {"fuse_scale": False},
                              "BatchNormLayer": {"variance": "raw"}}}
    back = Overrides.load(path)
    assert back == ov and back.path == path
    assert Overrides.from_dict(ov.to_dict()) == ov
    # no temp files left behind
    assert os.listdir(tmp_path) == ["m.json"]


def test_for_node_order_kind_then_source_type_then_layer():
    ov = Overrides(kinds={"BatchNorm": {"epsilon": 1.0, "momentum": 0.5},
                          "BatchNormLayer": {"epsilon": 2.0}},
                   layers={"a": {"epsilon": 3.0}})
    assert ov.for_node("a", "BatchNorm", "BatchNormLayer") == {"epsilon": 3.0, "momentum": 0.5}
    assert ov.for_node("b", "BatchNorm", "BatchNormLayer") == {"epsilon": 2.0, "momentum": 0.5}
    assert ov.for_node("b", "BatchNorm") == {"epsilon": 1.0, "momentum": 0.5}


def test_set_unset():
    ov = Overrides()
    ov.set("epsilon", 1e-3, layer="x")
    ov.set("momentum", 0.9, layer="x")
    ov.unset("epsilon", layer="x")
    assert ov.layers == {"x": {"momentum": 0.9}}
    ov.set("momentum", None, layer="x")       # None = back to the default
    assert ov.layers == {} and not ov
    ov.set("fuse_scale", True, kind="BatchNorm")
    ov.unset(kind="BatchNorm")
    assert ov.kinds == {}
    with pytest.raises(ValueError):
        ov.set("epsilon", 1.0)
    with pytest.raises(MigratorError, match="'fuse_scale'.*true or false"):
        ov.set("fuse_scale", "yes", kind="BatchNorm")
    with pytest.raises(MigratorError, match="unknown option 'epsilom'"):
        ov.set("epsilom", 1e-3, layer="x")


@pytest.mark.parametrize("content, match", [
    ("{not json", "invalid JSON at line 1"),
    ([1, 2], "JSON object"),
    ({"layers": {}}, "no 'version'"),
    ({"version": 2}, "version 2"),
    ({"version": 1, "layer": {}}, "unknown top-level key.*'layer'"),
    ({"version": 1, "layers": []}, "'layers' must be an object"),
    ({"version": 1, "layers": {"bn1": 3}}, "'layers.bn1' must be an object"),
    ({"version": 1, "layers": {"bn1": {"epsilon": [1]}}}, "'layers.bn1.epsilon'"),
    ({"version": 1, "layers": {"bn1": {"epsilom": 1e-3}}}, "unknown option 'epsilom'"),
    ({"version": 1, "kinds": {"BatchNorm": {"epsilon": "small"}}}, "'epsilon' must be a number"),
    ({"version": 1, "kinds": {"BatchNorm": {"variance": "clamp"}}}, "'variance' must be one of"),
    ({"version": 1, "kinds": {"BatchNorm": {"conv_flip": True}}}, "unknown option .conv_flip. for a BatchNorm"),
    ({"version": 1, "kinds": {"NoSuchLayer": {"epsilon": 1e-3}}}, "unknown layer kind 'NoSuchLayer'"),
])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, content, match):
    path = write(tmp_path, content)
    with pytest.raises(MigratorError, match=match) as ei:
        Overrides.load(path)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(path)


def test_missing_file(tmp_path):
    with pytest.raises(MigratorError, match="cannot read mapping file"):
        Overrides.load(str(tmp_path / "nope.json"))


def test_check_against_graph(tmp_path):
    g = small_graph()
    path = write(tmp_path, {"version": 1, "layers": {"bn2": {"epsilon": 1e-3}}})
    ov = Overrides.load(path)
    with pytest.raises(MigratorError, match="layer 'bn2' which is not in the model") as ei:
        ov.check_against(g)
    assert ei.value.key == "bn2" and str(ei.value).startswith(path)
    # a key valid for some rule but not for this layer's op
    ov = Overrides.load(write(tmp_path, {"version": 1, "layers": {"data": {"epsilon": 1e-3}}}))
    with pytest.raises(MigratorError, match="unknown option 'epsilon'.*Input"):
        make_plan(g, ov)


def test_null_means_default_and_kinds_apply(tmp_path):
    g = small_graph()
    ov = Overrides.load(write(tmp_path, {"version": 1, "layers": {"bn1": {"epsilon": None}},
                                         "kinds": {"BatchNorm": {"epsilon": 0.25}}}))
    assert ov.layers == {"bn1": {}}
    m = make_plan(g, ov).mapping("bn1")
    assert m.layers[0].config["epsilon"] == 0.25
    assert m.options["epsilon"] == 0.25


def test_integer_epsilon_coerced_to_float(tmp_path):
    ov = Overrides.load(write(tmp_path, {"version": 1, "kinds": {"BatchNorm": {"epsilon": 1}}}))
    assert ov.kinds["BatchNorm"]["epsilon"] == 1.0 and isinstance(ov.kinds["BatchNorm"]["epsilon"], float)
