"""Bad builder scripts: one-line MigratorError naming the file (and the line), never a traceback;
the builder runs in a child process, never in Migrator's."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.importers.lasagne import describe_builder, load_lasagne
from migrator.testing import lasagne_models as M


def _write(tmp_path, body, name="builder.py"):
    return M.write_script(tmp_path, M.HEADER + body, name)


def _err(tmp_path, body, **kw) -> str:
    b = _write(tmp_path, body)
    with pytest.raises(MigratorError) as ei:
        describe_builder(b, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(b), msg
    return msg


def test_exception_in_builder_shows_message_and_line(tmp_path):
    msg = _err(tmp_path, '''
def build_model():
    l = InputLayer((None, 3, 8, 8))
    l = Conv2DLayer(l, 4, 3)
    raise ValueError("weights for layer 7 are missing")
''')
    line = M.HEADER.count("\n") + 5
    assert "ValueError: weights for layer 7 are missing" in msg
    assert f"at line {line}" in msg and 'raise ValueError("weights' in msg


def test_lasagne_level_error_is_reported_at_the_script_line(tmp_path):
    msg = _err(tmp_path, '''
def build_model():
    l = InputLayer((None, 3, 8, 8))
    return Conv2DLayer(l, 4, 4, pad='same')
''')
    assert "requires odd filter size" in msg and "Conv2DLayer(l, 4, 4, pad='same')" in msg


def test_exception_at_module_level(tmp_path):
    msg = _err(tmp_path, '\nimport some_module_that_does_not_exist\n')
    assert "ModuleNotFoundError" in msg and "some_module_that_does_not_exist" in msg


def test_missing_builder_function_lists_the_functions(tmp_path):
    msg = _err(tmp_path, '''
def make_net():
    return InputLayer((None, 3))
''')
    assert "no function 'build_model'" in msg and "make_net" in msg
    g_ok = describe_builder(os.path.join(tmp_path, "builder.py"), builder_function="make_net")
    assert g_ok["layers"][0]["class"] == "InputLayer"


def test_syntax_error_names_the_line(tmp_path):
    msg = _err(tmp_path, '\ndef build_model(:\n    pass\n')
    assert "syntax error" in msg and f"line {M.HEADER.count(chr(10)) + 2}" in msg


def test_timeout_stops_the_child(tmp_path):
    t = time.monotonic()
    msg = _err(tmp_path, '''
import time
def build_model():
    time.sleep(60)
''', timeout=3)
    assert "did not finish within 3 s" in msg
    assert time.monotonic() - t < 30


def test_builder_returning_something_else(tmp_path):
    msg = _err(tmp_path, '\ndef build_model():\n    return 42\n')
    assert "returned int" in msg


def test_unknown_output_key(tmp_path):
    msg = _err(tmp_path, '''
def build_model():
    return {'input': InputLayer((None, 3)), 'fc': None}
''', output_layer="prob")
    assert "no layer under the key 'prob'" in msg and "input" in msg


def test_missing_builder_file(tmp_path):
    with pytest.raises(MigratorError) as ei:
        describe_builder(str(tmp_path / "nope.py"))
    assert "not found" in str(ei.value) and "nope.py" in str(ei.value)


def test_child_crash_without_description(tmp_path):
    msg = _err(tmp_path, '''
import os
def build_model():
    os._exit(7)
''')
    assert "exit code 7" in msg


def test_builder_runs_in_a_child_process_not_here(tmp_path):
    marker = tmp_path / "pid.txt"
    b = _write(tmp_path, f'''
import os, sys
print("noise on stdout that must not confuse the importer")
def build_model():
    open({str(marker)!r}, "w").write(str(os.getpid()) + " " + __name__)
    return DenseLayer(InputLayer((None, 6)), 2)

if __name__ == "__main__":
    open({str(marker)!r} + ".main", "w").write("main block ran")
''')
    p = M.write_params(str(tmp_path / "p.pkl"), [np.ones((6, 2), np.float32),
                                                np.zeros(2, np.float32)], "pkl_list")
    before = {k for k in sys.modules if k.split(".")[0] in ("lasagne", "theano")}
    g = load_lasagne(b, p)
    pid, name = marker.read_text().split()
    assert int(pid) != os.getpid()
    assert name != "__main__" and not os.path.exists(str(marker) + ".main")
    after = {k for k in sys.modules if k.split(".")[0] in ("lasagne", "theano")}
    assert after == before          # the stand-ins never enter Migrator's process
    assert [n.op for n in g.nodes] == ["Input", "Dense"]


def test_unsupported_custom_layer_is_not_an_import_error(tmp_path):
    b, p, _ = M.write_model(tmp_path, M.CUSTOM_SCRIPT, "npz")
    g = load_lasagne(b, p)
    node = g.node("myscale")
    assert node.op == "Custom" and node.attrs["class_name"] == "MyScale"
    assert node.params["w"].shape == (4,) and node.attrs["factor"] == 3.0
    assert any("myscale" in w and "Custom" in w for w in g.warnings)
    from migrator.core.mapping.planner import make_plan
    plan = make_plan(g)
    bad = [m for m in plan.mappings if not m.supported]
    assert [m.source for m in bad] == ["myscale"] and "MyScale" in bad[0].error
