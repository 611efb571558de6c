"""Quiet output: a conversion prints Migrator's lines only -- no TensorFlow C++/absl log line,
whatever TF_CPP_MIN_LOG_LEVEL says -- unless --verbose."""
import os
import subprocess
import sys

import pytest

from migrator.core.native_logs import NATIVE_LOG

from .test_cli import REPO, small_net

ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
ENV["PYTHONPATH"] = REPO


def test_the_filter_drops_native_lines_only():
    code = (
        "import os, sys\n"
        "from migrator.core.native_logs import NativeLogFilter\n"
        "with NativeLogFilter() as f:\n"
        "    os.write(2, b'I0000 00:00:1796684149.614334   32088 cudart_stub.cc:31] Could not find cuda\\n')\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "    print('migrator: error: kept', file=sys.stderr)\n"
        "    os.write(2, b'E0000 00:00:1.2   1 cuda_platform.cc:52] failed call to cuInit\\n')\n"
        "print(f.dropped)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=REPO,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "migrator: error: kept\n" and r.stdout.strip() == "3"


def test_convert_prints_no_tensorflow_log_line(tmp_path):
    proto, model = small_net(tmp_path)
    r = subprocess.run([sys.executable, "-m", "migrator", "convert", str(proto), str(model), "-o",
                        str(tmp_path / "m.keras")], capture_output=True, text=True, env=ENV, cwd=REPO,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    assert not [ln for ln in lines if NATIVE_LOG.match(ln.encode())], r.stderr
    assert not [ln for ln in lines if "retracing" in ln or "tf.function" in ln or "oneDNN" in ln], lines
    assert r.stderr == "", r.stderr


@pytest.fixture(scope="module")
def grouped_net(tmp_path_factory):
    """An AlexNet (BVLC topology, channels / 16, 99x99): three grouped convolutions and two LRNs."""
    from migrator.testing.architectures import alexnet
    d = tmp_path_factory.mktemp("quiet_alexnet")
    return d, alexnet(width=16, size=99).save(d / "alexnet.prototxt", d / "alexnet.caffemodel")


@pytest.mark.slow
def test_grouped_conversion_prints_no_warning_line(grouped_net):
    d, (proto, model) = grouped_net
    r = subprocess.run([sys.executable, "-m", "migrator", "convert", str(proto), str(model), "-o",
                        str(d / "quiet.keras"), "--precision", "all"], capture_output=True, text=True,
                       env=ENV, cwd=REPO, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    assert not [ln for ln in lines if "warning" in ln.lower() or "retracing" in ln], lines
    assert r.stderr == "", r.stderr


@pytest.mark.slow
def test_migrators_own_calls_cause_no_retracing(grouped_net):
    """With --verbose TensorFlow's Python logger is left alone, so a retracing warning caused by
    Migrator's own calls (every eager call of a grouped convolution traced Keras's XLA conv
    function again; the float64 second look of every layer makes such calls) would show."""
    d, (proto, model) = grouped_net
    r = subprocess.run([sys.executable, "-m", "migrator", "--verbose", "convert", str(proto), str(model),
                        "-o", str(d / "verbose.keras"), "--precision", "all"], capture_output=True,
                       text=True, env=ENV, cwd=REPO, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert "VERIFICATION PASSED" in r.stdout
    lines = (r.stdout + r.stderr).splitlines()
    assert not [ln for ln in lines if "retracing" in ln or ln.startswith("WARNING:tensorflow")], lines
