"""Conversion memory on an AlexNet-size Caffe model (issue 12 item 4).

Generates BVLC AlexNet's architecture with random float32 weights by code (61 M parameters,
~244 MB caffemodel) in a temporary folder, then measures peak RSS (VmHWM from
/proc/self/status, read at exit) in fresh processes:

* bare TensorFlow: ``import tensorflow, keras`` and nothing else;
* ``migrator convert deploy.prototxt w.caffemodel -o x.keras`` (the CLI, whole run); the
  fresh-process check of the written artifact runs in its own child: measured separately;
* the same steps one by one in one process, the peak of each step (the high-water mark is
  reset between steps through /proc/self/clear_refs): import + plan, Keras build, comparison,
  save/export (its check child measured separately again).

Printed: the figures and the ratio (peak - bare TF) / parameter bytes against the target 4x.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

TARGET = 4.0

# Appended at the start of a child's code: at exit, append "label VmHWM-bytes" to the file
# named by $MIGRATOR_BENCH_HWM (atexit also runs on sys.exit).
_HWM_HOOK = r"""
import atexit as _ax, os as _os
def _hwm_report(label=__import__('sys').argv[0]):
    f = _os.environ.get('MIGRATOR_BENCH_HWM')
    if f:
        kb = int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
        with open(f, 'a') as fh:
            fh.write(_os.environ.get('MIGRATOR_BENCH_LABEL', 'child') + ' ' + str(kb * 1024) + '\n')
_ax.register(_hwm_report)
"""

# Used in the measured processes: the exporter's fresh-process check reports its own peak.
_PATCH_VERIFY = r"""
from migrator.core import export as _ex
_ex.VERIFY_SCRIPT = HOOK + "\n" + _ex.VERIFY_SCRIPT
_os.environ['MIGRATOR_BENCH_LABEL'] = 'check'
"""

_BARE = _HWM_HOOK + r"""
import tensorflow, keras
"""

_CLI = _HWM_HOOK + r"""
import sys
HOOK = sys.argv[1]
""" + _PATCH_VERIFY + r"""
from migrator.cli import main
rc = main(sys.argv[2:])
_os.environ['MIGRATOR_BENCH_LABEL'] = 'cli'
sys.exit(rc)
"""

_STEPS = _HWM_HOOK + r"""
import sys, json
HOOK = sys.argv[1]
proto, model, out = sys.argv[2:5]
def hwm():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) * 1024
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) * 1024
def reset():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
steps = []
def mark(name):
    steps.append((name, hwm(), rss()))
    reset()
import tensorflow, keras
mark('import tensorflow + keras')
""" + _PATCH_VERIFY + r"""
from migrator.core import export, flow, inputs
g = flow.open_model([proto, model]); p = flow.plan_model(g)
mark('import model + plan')
km = flow.build_model(p, release_weights=True)
mark('build Keras (weights set)')
x, d = inputs.make_input(g, inputs.InputSpec(seed=0))
res = flow.compare(g, p, km, x, input_desc=d)
mark('compare (layer by layer)')
export.export(km, p, res, out, graph=g)
mark('save + export (this process)')
_os.environ['MIGRATOR_BENCH_LABEL'] = 'steps'
print(json.dumps(steps))
"""


def _run(code: str, args: list[str], hwm_file: str, label: str, cwd: str) -> str:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["MIGRATOR_BENCH_HWM"] = hwm_file
    env["MIGRATOR_BENCH_LABEL"] = label
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=1800, check=False, env=env, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(f"{label} child failed (exit {out.returncode}): {out.stderr[-3000:]}")
    return out.stdout


def _read_hwm(path: str) -> dict[str, int]:
    got: dict[str, int] = {}
    with open(path) as f:
        for ln in f:
            k, v = ln.split()
            got[k] = max(got.get(k, 0), int(v))
    os.remove(path)
    return got


def param_bytes(caffemodel: str) -> int:
    """float32 bytes of every stored blob of the caffemodel."""
    from migrator.core.importers.caffe_proto import pb
    net = pb.NetParameter()
    with open(caffemodel, "rb") as f:
        net.ParseFromString(f.read())
    n = 0
    for layer in list(net.layer) + list(net.layers):
        for b in layer.blobs:
            n += max(len(b.data), len(b.double_data))
    return 4 * n


def _mib(v: int) -> str:
    return f"{v / 2**20:8.1f} MiB"


def main() -> dict:
    from benchmarks.gpu_compare import alexnet
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="migrator-bench-mem-") as td:
        proto, model = alexnet(td, quick=False)
        pbytes = param_bytes(model)
        print(f"model: AlexNet architecture, random float32 weights: {os.path.getsize(model) / 1e6:.1f} MB "
              f"caffemodel, {pbytes / 4 / 1e6:.1f} M parameters = {pbytes / 1e6:.1f} MB", flush=True)
        hwm_file = os.path.join(td, "hwm.txt")

        _run(_BARE, [], hwm_file, "bare", td)
        bare = _read_hwm(hwm_file)["bare"]
        print(f"{'peak RSS: bare import tensorflow, keras':<46} {_mib(bare)}", flush=True)

        def ratio(v):
            return (v - bare) / pbytes

        def verdict(v):
            return f"(target <= {TARGET:g}x: {'OK' if ratio(v) <= TARGET else 'MISSED'})"

        out = os.path.join(td, "x.keras")
        _run(_CLI, [_HWM_HOOK, "convert", proto, model, "-o", out], hwm_file, "cli", td)
        got = _read_hwm(hwm_file)
        cli, check = got["cli"], got.get("check", 0)
        print(f"{'peak RSS: migrator convert (whole CLI run)':<46} {_mib(cli)}  "
              f"= bare TF + {ratio(cli):.2f}x param bytes {verdict(cli)}", flush=True)
        print(f"{'peak RSS: its fresh-process artifact check':<46} {_mib(check)}  "
              f"= bare TF + {ratio(check):.2f}x param bytes {verdict(check)}", flush=True)
        figures.update(param_bytes=pbytes, rss_bare_tf=bare, rss_convert=cli, rss_convert_check=check,
                       convert_ratio=ratio(cli), check_ratio=ratio(check))

        for f in os.listdir(td):
            if f.startswith("x"):
                p = os.path.join(td, f)
                if os.path.isfile(p):
                    os.remove(p)
        steps = json.loads(_run(_STEPS, [_HWM_HOOK, proto, model, out], hwm_file, "steps", td)
                           .strip().splitlines()[-1])
        got = _read_hwm(hwm_file)
        print("steps, one process (peak during the step; RSS at its end):")
        for name, peak, rss in steps:
            print(f"  {name:<44} {_mib(peak)}  = bare TF + {ratio(peak):5.2f}x   (end {_mib(rss)})")
            figures[f"step_{name}"] = peak
        check = got.get("check", 0)
        print(f"  {'fresh-process artifact check (own process)':<44} {_mib(check)}  "
              f"= bare TF + {ratio(check):5.2f}x")
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
