"""The legacy bridge's failure modes: every broken environment gives one clear MigratorError with the
environment's own error text; cancel and timeout kill the subprocess.  Runs without any legacy
environment: the 'environments' are this machine's Python with small stand-in modules."""
from __future__ import annotations

import os
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from migrator.core.errors import Cancelled, MigratorError
from migrator.core.reference.legacy import LegacyRuntime, _PathMap, chroot_dir, split_command
from migrator.core.reference.runtimes import available_runtimes, get_runtime

PY = sys.executable

# A stand-in 'caffe' package with pycaffe's Net surface; its behaviour is chosen by FAKE_CAFFE.
FAKE_CAFFE = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    __version__ = "0.0-fake"
    TEST = 1
    MODE = os.environ.get("FAKE_CAFFE", "")
    def set_mode_cpu():
        pass
    class _Blob(object):
        def __init__(self, shape):
            self.data = np.zeros(shape, np.float32)
        def reshape(self, *shape):
            self.data = np.zeros(shape, np.float32)
    class _Layer(object):
        def __init__(self, type_):
            self.type = type_
            self.blobs = []
    class Net(object):
        def __init__(self, proto, weights, phase):
            if MODE == "raise_load":
                raise RuntimeError("Check failed: boom in the prototxt parser")
            self._layer_names = ["data", "conv", "relu"]
            self.layers = [_Layer("Input"), _Layer("Convolution"), _Layer("ReLU")]
            self.top_names = {"data": ["data"], "conv": ["conv"], "relu": ["conv"]}
            if MODE == "two_tops":
                self.top_names["conv"] = ["conv", "conv_b"]
            self.bottom_names = {"data": [], "conv": ["data"], "relu": ["conv"]}
            self.blobs = {"data": _Blob((1, 2, 4, 4)), "conv": _Blob((1, 3, 4, 4)),
                          "conv_b": _Blob((1, 3, 4, 4))}
        def reshape(self):
            pass
        def _forward(self, i, j):
            if MODE == "segv" and i == 2:
                sys.stderr.write("*** Aborted at 1700000000 (unix time) try date -d @1700000000\\n")
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGSEGV)
            if MODE == "raise_run" and i == 1:
                raise ValueError("blob size mismatch in fake forward")
            self.blobs["conv"].data[...] = float(i)
''')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real little Caffe model read by Migrator's importer (the graph the runtime is asked to run)."""
    from migrator.core.importers.caffe import load_caffe
    from migrator.testing.caffe_net import NetBuilder
    d = tmp_path_factory.mktemp("tiny")
    nb = NetBuilder("tiny", seed=1)
    nb.input("data", (1, 2, 4, 4))
    nb.conv("conv", "data", 3, 3, pad=1)
    nb.relu("relu", "conv", top="conv")
    proto, model = nb.save(d / "tiny.prototxt", d / "tiny.caffemodel")
    return load_caffe(proto, model)


@pytest.fixture(scope="module")
def fake_caffe_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fakecaffe")
    (d / "caffe").mkdir()
    (d / "caffe" / "__init__.py").write_text(FAKE_CAFFE)
    return str(d)


def x_for(graph):
    return np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)


def fake_runtime(fake_caffe_dir, mode, **kw):
    return get_runtime("legacy", command=[PY], env={"PYTHONPATH": fake_caffe_dir, "FAKE_CAFFE": mode}, **kw)


# --------------------------------------------------------------------------------- parsing
def test_command_parsing_and_chroot_detection():
    assert split_command("conda run -n old python") == ["conda", "run", "-n", "old", "python"]
    assert split_command("'/opt/my env/bin/python' -E") == ["/opt/my env/bin/python", "-E"]
    assert chroot_dir(["chroot", "/srv/old", "python3"]) == "/srv/old"
    assert chroot_dir(["sudo", "chroot", "--userspec", "1000:1000", "/srv/old", "python"]) == "/srv/old"
    assert chroot_dir(["/usr/sbin/chroot", "--userspec=u:g", "/srv/x", "python"]) == "/srv/x"
    assert chroot_dir(["conda", "run", "-n", "old", "python"]) is None
    assert chroot_dir(["python3", "-c", "chroot"]) is None
    with pytest.raises(MigratorError):
        split_command("python 'unclosed")


def test_path_map(tmp_path):
    m = _PathMap(str(tmp_path / "root"), "/")
    (tmp_path / "root" / "tmp").mkdir(parents=True)
    assert m.to_env(str(tmp_path / "root" / "tmp" / "a.npy")) == "/tmp/a.npy"
    assert m.to_env(str(tmp_path / "elsewhere.npy")) is None
    m2 = _PathMap(str(tmp_path), "/data")
    assert m2.to_env(str(tmp_path / "x" / "m.caffemodel")) == "/data/x/m.caffemodel"
    assert _PathMap(None, None).to_env("rel.txt") == os.path.abspath("rel.txt")


def test_chroot_work_dir_is_inside_the_root(tmp_path):
    root = tmp_path / "oldroot"
    (root / "tmp").mkdir(parents=True)
    rt = LegacyRuntime(["chroot", str(root), "python3"])
    wd, env_wd = rt._make_workdir()
    assert os.path.realpath(wd).startswith(os.path.realpath(root) + "/tmp/migrator-")
    assert env_wd.startswith("/tmp/migrator-") and os.path.basename(wd) == os.path.basename(env_wd)
    # a model file outside the root is linked/copied into the work dir, visible inside
    f = tmp_path / "m.caffemodel"
    f.write_bytes(b"abc")
    p = rt._visible(str(f), wd, env_wd)
    assert p == env_wd + "/files/m.caffemodel"
    assert (root / p.lstrip("/")).read_bytes() == b"abc"
    # explicit path_map wins over chroot detection
    rt2 = LegacyRuntime(["chroot", str(root), "python3"], path_map=f"{tmp_path}:/mnt")
    assert rt2.root is None and rt2.paths.to_env(str(f)) == "/mnt/m.caffemodel"


def test_available_runtimes_reasons(tiny):
    rows = {name: (ok, why) for name, ok, why in available_runtimes(tiny)}
    assert rows["builtin"][0] and rows["opencv"][0]
    assert not rows["legacy"][0] and "--legacy-python" in rows["legacy"][1]
    rows = {n: (ok, why) for n, ok, why in available_runtimes(tiny, {"legacy": {"command": PY}})}
    assert rows["legacy"] == (True, "")
    assert get_runtime("legacy", command=PY).check(None) is None


# --------------------------------------------------------------------------------- failures
def test_interpreter_not_found(tiny):
    rt = get_runtime("legacy", command="/nonexistent/old/bin/python2.7")
    assert "command not found: /nonexistent/old/bin/python2.7" in rt.check(tiny)
    with pytest.raises(MigratorError, match="command not found"):
        list(rt.run(tiny, x_for(tiny)))


def test_command_not_found_inside_wrapper(tiny):
    # the wrapper exists, the interpreter it should start does not (like `chroot DIR python9`)
    rt = get_runtime("legacy", command="env no-such-python-9")
    with pytest.raises(MigratorError) as ei:
        list(rt.run(tiny, x_for(tiny)))
    msg = str(ei.value)
    assert "exited with status 127" in msg and "no-such-python-9" in msg
    assert "\n" not in msg


def test_framework_not_importable(tiny):
    rt = get_runtime("legacy", command=[PY])     # this Python has no caffe
    with pytest.raises(MigratorError) as ei:
        list(rt.run(tiny, x_for(tiny)))
    msg = str(ei.value)
    assert "not importable" in msg and "caffe" in msg and "No module named" in msg
    info = rt.probe("python")                   # the interpreter itself is fine
    assert info["versions"]["numpy"] == np.__version__


def test_not_a_python(tiny):
    rt = get_runtime("legacy", command=["true"])
    with pytest.raises(MigratorError, match="reported nothing"):
        list(rt.run(tiny, x_for(tiny)))


def test_crash_by_exit_status(tiny):
    rt = get_runtime("legacy", command=[PY, "-c", "import os, sys; sys.stderr.write('oops\\n'); os._exit(139)"])
    with pytest.raises(MigratorError) as ei:
        list(rt.run(tiny, x_for(tiny)))
    msg = str(ei.value)
    assert "status 139" in msg and "SIGSEGV" in msg and "oops" in msg


def test_segfault_mid_run_keeps_framework_text(tiny, fake_caffe_dir):
    rt = fake_runtime(fake_caffe_dir, "segv")
    got = []
    with pytest.raises(MigratorError) as ei:
        for name, outs in rt.run(tiny, x_for(tiny)):
            got.append(name)
    msg = str(ei.value)
    assert "SIGSEGV" in msg and "Aborted at" in msg
    assert got[:2] == ["data", "conv"]        # what came before the crash was delivered
    assert rt.describe()["versions"]["caffe"] == "0.0-fake"


def test_framework_raises_on_load_and_on_run(tiny, fake_caffe_dir):
    with pytest.raises(MigratorError, match="boom in the prototxt parser"):
        list(fake_runtime(fake_caffe_dir, "raise_load").run(tiny, x_for(tiny)))
    with pytest.raises(MigratorError) as ei:
        list(fake_runtime(fake_caffe_dir, "raise_run").run(tiny, x_for(tiny)))
    assert "blob size mismatch" in str(ei.value) and ei.value.layer == "conv"


def test_output_count_mismatch(tiny, fake_caffe_dir):
    with pytest.raises(MigratorError) as ei:
        list(fake_runtime(fake_caffe_dir, "two_tops").run(tiny, x_for(tiny)))
    assert ei.value.layer == "conv" and "2 output(s)" in str(ei.value)


def test_fake_run_streams_in_graph_order(tiny, fake_caffe_dir):
    rt = fake_runtime(fake_caffe_dir, "")
    names = [n for n, _ in rt.run(tiny, x_for(tiny))]
    assert names == [n.name for n in tiny.nodes]
    assert not os.path.exists(rt.last_workdir)      # work dir removed


def _sleeper(seconds=60):
    return [PY, "-c", f"import time; print('starting', flush=True); time.sleep({seconds})"]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_timeout_kills_the_bridge(tiny):
    rt = get_runtime("legacy", command=_sleeper(), timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(MigratorError, match="timeout"):
        list(rt.run(tiny, x_for(tiny)))
    assert time.monotonic() - t0 < 10


@pytest.fixture
def started(monkeypatch):
    """The processes subprocess.Popen starts during the test, in order."""
    import subprocess
    out = []
    real_popen = subprocess.Popen

    def spy(*a, **k):
        p = real_popen(*a, **k)
        out.append(p)
        return p
    monkeypatch.setattr(subprocess, "Popen", spy)
    return out


def test_cancel_kills_the_bridge(tiny, started):
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    rt = get_runtime("legacy", command=_sleeper())
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        list(rt.run(tiny, x_for(tiny), cancel=flag.is_set))
    assert time.monotonic() - t0 < 10
    assert started and not _alive(started[0].pid)


def test_closing_the_generator_kills_the_bridge(tiny, fake_caffe_dir, started):
    rt = fake_runtime(fake_caffe_dir, "")
    it = rt.run(tiny, x_for(tiny))
    assert next(it)[0] == "data"
    it.close()
    assert not _alive(started[0].pid)
    assert not os.path.exists(rt.last_workdir)


def _python27():
    import glob
    import shutil
    cands = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python2.7")))
    cands += [shutil.which("python2.7"), shutil.which("python2")]
    return next((c for c in cands if c and os.path.exists(c) and "/shims/" not in c), None)


def test_bridge_runs_on_python_2_7(tiny):
    """The bridge is sent to old environments: it must at least start and report on Python 2.7."""
    py27 = _python27()
    if py27 is None:
        pytest.skip("no Python 2.7 interpreter on this machine")
    rt = get_runtime("legacy", command=[py27])
    try:
        info = rt.probe("python")
    except MigratorError as e:      # a bare 2.7 without numpy: the bridge ran and said so
        assert "numpy cannot be imported" in str(e), str(e)
    else:
        assert info["python"].startswith("2.7")
