"""Smoke test of the PyInstaller bundle (``make package-check``); standard library only.

    python3 packaging/check_bundle.py [dist/Migrator] [--out DIR]

Runs the built executables, never the source tree, in a scratch HOME (so the user's settings
and caches are untouched) with ``QT_QPA_PLATFORM=offscreen``:

1. ``migrator --version`` exits 0 and prints the Migrator version and the TensorFlow devices;
2. ``migrator-gui --screenshot OUT.png`` (opens the Caffe demo, compares, selects the first
   batch-norm layer, saves the window) exits 0 and writes a PNG of plausible size;
3. ``migrator compare`` on the generated Caffe demo exits 0 (TensorFlow and the reference
   executor really run inside the bundle);
4. ``migrator inspect`` on the Lasagne demo exits 0 (the builder child process runs from the
   bundle).

Exit status 0 when every check passes, 1 otherwise; each check prints one line with its time.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _version() -> str:
    with open(os.path.join(ROOT, "migrator", "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'__version__\s*=\s*"([^"]+)"', f.read())
    return m.group(1) if m else "?"


def _png_size(path: str) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


class Checker:
    def __init__(self, bundle: str, out: str, timeout: float):
        self.bundle, self.out, self.timeout = bundle, out, timeout
        self.failed = 0
        home = os.path.join(out, "home")
        os.makedirs(home, exist_ok=True)
        self.env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                        XDG_CACHE_HOME=os.path.join(home, ".cache"),
                        XDG_DATA_HOME=os.path.join(home, ".local", "share"),
                        QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2")
        # a bundle must not lean on the developer's environment
        for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            self.env.pop(k, None)

    def run(self, name: str, argv: list[str], check=None) -> subprocess.CompletedProcess | None:
        exe = os.path.join(self.bundle, argv[0])
        t0 = time.perf_counter()
        try:
            p = subprocess.run([exe, *argv[1:]], env=self.env, cwd=self.out, stdin=subprocess.DEVNULL, check=False,
                               capture_output=True, timeout=self.timeout,
                               text=True, errors="replace")
        except (OSError, subprocess.TimeoutExpired) as e:
            self._report(name, False, time.perf_counter() - t0, str(e))
            return None
        dt = time.perf_counter() - t0
        problem = None if p.returncode == 0 else f"exit code {p.returncode}"
        if problem is None and check is not None:
            problem = check(p)
        if problem:
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
            problem += "\n    " + tail.replace("\n", "\n    ")
        self._report(name, problem is None, dt, problem)
        return p

    def _report(self, name, ok, dt, problem):
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({dt:.1f} s)" + ("" if ok else f": {problem}"),
              flush=True)
        self.failed += not ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", default=os.path.join(ROOT, "dist", "Migrator"))
    ap.add_argument("--out", help="scratch folder (default: a temporary folder, removed afterwards)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per command")
    args = ap.parse_args(argv)
    bundle = os.path.abspath(args.bundle)
    for exe in ("migrator", "migrator-gui"):
        if not os.access(os.path.join(bundle, exe), os.X_OK):
            print(f"check_bundle: {bundle}/{exe} is missing (run `make package` first)", file=sys.stderr)
            return 1
    out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(prefix="migrator-package-check-")
    os.makedirs(out, exist_ok=True)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(bundle) for f in fs
               if not os.path.islink(os.path.join(d, f)))
    print(f"bundle {bundle}: {size / 2**20:.0f} MiB", flush=True)
    c = Checker(bundle, out, args.timeout)
    ver = _version()

    def version_ok(p):
        if f"migrator {ver}" not in p.stdout:
            return f"output does not name 'migrator {ver}'"
        if "TensorFlow devices:" not in p.stdout:
            return "output does not list the TensorFlow devices"
        return None
    p = c.run("migrator --version", ["migrator", "--version"], version_ok)
    if p is not None and p.returncode == 0:
        print("    " + p.stdout.strip().replace("\n", "\n    "))

    shot = os.path.join(out, "screenshot.png")

    def shot_ok(p):
        if not os.path.isfile(shot):
            return f"no screenshot written at {shot}"
        wh = _png_size(shot)
        if wh is None or wh[0] < 400 or wh[1] < 300 or os.path.getsize(shot) < 20_000:
            return f"screenshot is not a plausible window PNG ({wh}, {os.path.getsize(shot)} bytes)"
        return None
    c.run("migrator-gui --screenshot (offscreen)", ["migrator-gui", "--screenshot", shot], shot_ok)

    demo = None
    for base in (os.path.join(bundle, "_internal", "migrator", "resources", "demo"),
                 os.path.join(c.env["XDG_CACHE_HOME"], "migrator", "demo")):
        if os.path.isfile(os.path.join(base, "caffe", "demo.prototxt")):
            demo = base
            break
    if demo is None:
        c._report("demo models generated by the app", False, 0.0, "no demo folder found")
    else:
        caffe = [os.path.join(demo, "caffe", f) for f in ("demo.prototxt", "demo.caffemodel")]
        c.run("migrator compare (Caffe demo, builtin reference)", ["migrator", "compare", *caffe],
              lambda p: None if "VERIFICATION PASSED" in p.stdout else "no VERIFICATION PASSED line")
        las = [os.path.join(demo, "lasagne", f) for f in ("demo_lasagne.py", "demo_lasagne.pkl")]
        if all(os.path.isfile(f) for f in las):
            c.run("migrator inspect (Lasagne demo, builder child process)", ["migrator", "inspect", *las],
                  lambda p: None if "lasagne model" in p.stdout.lower() else "no Lasagne layer table")
    if args.out is None:
        if c.failed:
            print(f"scratch folder kept for inspection: {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    print("package-check: " + ("OK" if not c.failed else f"{c.failed} check(s) FAILED"))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
