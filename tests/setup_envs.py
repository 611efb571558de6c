"""Test set-up run by ``make test`` before pytest: build the real-framework environments once.

* Caffe: a Debian 11 root with Debian's python3-caffe (``tests/envs/caffe_root.py``), used through
  ``chroot <root> python3`` by the legacy-bridge tests.
* Theano: a virtual environment with theano 1.0.5 + Lasagne (``tests/envs/theano_env.py``).

Prints one line per environment (ready / built in N s) and exits 0 when both are there.  When one
cannot be built it prints one ``error:`` line naming the tier and the reason and exits 1, so that
``make test`` (and CI) stop instead of running a suite that silently skips its real-framework
tiers -- unless that tier is explicitly opted out (``MIGRATOR_ALLOW_MISSING_TIERS=1`` or
``=caffe``/``=theano``; ``MIGRATOR_NO_CAFFE_ROOT`` / ``MIGRATOR_NO_THEANO`` also count, see
``tests/envs/tiers.py``): then a loud ``NOT BUILT`` line is printed and the exit status is 0.
Fast when already built.

    python -m tests.setup_envs
"""
from __future__ import annotations

import importlib
import sys
import time
import traceback

from tests.envs import tiers

BUILDERS = {  # tier -> (label, module, function)
    "caffe": ("caffe (debian bullseye chroot)", "tests.envs.caffe_root", "ensure_caffe_root"),
    "theano": ("theano + lasagne (venv)", "tests.envs.theano_env", "ensure_theano_env"),
}


def _one(tier: str) -> tuple[str | None, str]:
    """Build one tier: (path or None, reason when None / how long it took)."""
    _, module, func = BUILDERS[tier]
    t0 = time.monotonic()
    try:
        mod = importlib.import_module(module)
        path = getattr(mod, func)()
    except Exception as e:  # noqa: BLE001 - reported as this tier's failure, with the traceback above it
        traceback.print_exc(file=sys.stderr)
        return None, f"{type(e).__name__}: {e}"
    if not path:
        return None, getattr(mod, "last_reason", None) or "unavailable (see the messages above)"
    dt = time.monotonic() - t0
    return str(path), (f"built in {dt:.0f} s" if dt > 5 else "ready")


def main() -> int:
    failed: list[tuple[str, str]] = []
    for tier, (label, _, _) in BUILDERS.items():
        path, info = _one(tier)
        if path:
            print(f"[setup_envs] {label}: {info}: {path}", flush=True)
            continue
        allowed = tiers.opted_out(tier)
        if allowed:
            print(f"[setup_envs] {label}: NOT BUILT ({info}); allowed by {allowed}: the "
                  f"{tiers.TIERS[tier].label} tests will be skipped and this run proves less", flush=True)
        else:
            failed.append((tier, " | ".join(ln.strip() for ln in info.splitlines() if ln.strip())))
    if failed:
        what = "; ".join(f"tier '{t}' ({tiers.TIERS[t].label}) was not built: {why}" for t, why in failed)
        print(f"[setup_envs] error: {what}; {tiers.hint([t for t, _ in failed])}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
