"""Test set-up run by ``make test`` before pytest: build the real-framework environments once.

* Caffe: a Debian 11 root with Debian's python3-caffe (``tests/envs/caffe_root.py``), used through
  ``chroot <root> python3`` by the legacy-bridge tests.
* Theano: a virtual environment with theano 1.0.5 + Lasagne (``tests/envs/theano_env.py``).

Prints one line per environment (ready / built in N s / skipped: reason) and always exits 0: the
tests that need an environment skip with the reason when it is absent.  Fast when already built.

    python -m tests.setup_envs
"""
from __future__ import annotations

import importlib
import sys
import time
import traceback


def _one(label: str, module: str, func: str) -> str:
    t0 = time.monotonic()
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return f"{label}: skipped: {module} not available ({e})"
    fn = getattr(mod, func, None)
    if fn is None:
        return f"{label}: skipped: {module}.{func} not defined"
    try:
        path = fn()
    except Exception as e:  # noqa: BLE001 - never fail the build
        traceback.print_exc(file=sys.stderr)
        return f"{label}: skipped: {type(e).__name__}: {e}"
    dt = time.monotonic() - t0
    if not path:
        reason = getattr(mod, "last_reason", None) or "unavailable (see the messages above)"
        return f"{label}: skipped: {reason}"
    if dt > 5:
        return f"{label}: built in {dt:.0f} s: {path}"
    return f"{label}: ready: {path}"


def main() -> int:
    lines = [
        _one("caffe (debian bullseye chroot)", "tests.envs.caffe_root", "ensure_caffe_root"),
        _one("theano + lasagne (venv)", "tests.envs.theano_env", "ensure_theano_env"),
    ]
    for line in lines:
        print(f"[setup_envs] {line}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - the build must go on whatever happens here
        traceback.print_exc()
    sys.exit(0)
