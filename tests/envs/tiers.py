"""The real-framework test tiers and the one switch that lets a run go on without them.

A *tier* is a set of tests marked with a pytest marker that run against an independent, real
framework.  Two of them need an environment that ``python -m tests.setup_envs`` (``make test``)
builds: ``caffe`` (the Debian 11 chroot with Debian's python3-caffe) and ``theano`` (the venv
with Theano 1.0.5 + Lasagne).  The third, ``opencv`` (OpenCV's DNN importer), is a plain
dependency installed by ``make test``.

A run where a buildable tier did not run proves less than it claims, so by default it fails:
``tests.setup_envs`` exits 1 when it cannot build one, and pytest (``tests/conftest.py``) exits 1
when tests of a tier were skipped because its environment is missing.  Opt-outs, for machines
that truly cannot build a tier (not root, no Debian mirror, no Python 3.8-3.11 ...), each
reported in a loud summary line instead of failing:

* ``MIGRATOR_ALLOW_MISSING_TIERS=1`` (or ``all``): every tier may be missing;
  ``MIGRATOR_ALLOW_MISSING_TIERS=caffe`` / ``=theano`` / ``=caffe,theano``: only those;
* ``MIGRATOR_NO_CAFFE_ROOT=1``: do not build the Caffe chroot (counts as opting out of ``caffe``);
* ``MIGRATOR_NO_THEANO=1``: do not build the Theano venv (counts as opting out of ``theano``).

``MIGRATOR_LEGACY_DIR`` moves both environments out of ``<repo>/.legacy`` (the set-up script's
own tests build into a temporary folder with it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

ALLOW_VAR = "MIGRATOR_ALLOW_MISSING_TIERS"
_ALL = {"1", "all", "yes", "true", "on"}


@dataclass(frozen=True)
class Tier:
    marker: str          # the pytest marker of its tests
    label: str           # what the tests run against
    disable_var: str | None   # the older per-tier switch that skips building it
    needs_env: bool      # built by tests.setup_envs (else a plain dependency)


TIERS: dict[str, Tier] = {
    "caffe": Tier("caffe", "real Caffe", "MIGRATOR_NO_CAFFE_ROOT", True),
    "theano": Tier("theano", "real Theano/Lasagne", "MIGRATOR_NO_THEANO", True),
    "opencv": Tier("opencv", "OpenCV", None, False),
}

#: the tiers whose absence fails a run unless opted out
REQUIRED = tuple(t for t, v in TIERS.items() if v.needs_env)


def _truthy(v: str | None) -> bool:
    return bool(v) and v.strip().lower() not in {"0", "no", "false", "off", ""}


def opted_out(tier: str, environ=None) -> str | None:
    """The setting that allows ``tier`` to be missing (e.g. ``'MIGRATOR_NO_THEANO=1'``), or None."""
    env = os.environ if environ is None else environ
    allow = env.get(ALLOW_VAR, "").strip()
    if allow:
        names = {p.strip().lower() for p in allow.replace(";", ",").replace(" ", ",").split(",") if p.strip()}
        if names & _ALL or tier in names:
            return f"{ALLOW_VAR}={allow}"
    var = TIERS[tier].disable_var
    if var and _truthy(env.get(var)):
        return f"{var}={env[var]}"
    return None


def availability(tier: str) -> tuple[bool, str]:
    """(usable now, reason when not): only looks, never builds."""
    if tier == "caffe":
        from tests.envs import caffe_root as cr
        if not cr.STAMP.exists() or not (cr.ROOT / "usr/bin/python3").exists():
            return False, f"no real-Caffe root at {cr.ROOT} (built by `python -m tests.setup_envs`, as root)"
        if os.geteuid() != 0:
            return False, "the real-Caffe root needs root (chroot)"
        return True, ""
    if tier == "theano":
        from tests.envs import theano_env as te
        if _truthy(os.environ.get("MIGRATOR_NO_THEANO")):
            return False, "disabled by MIGRATOR_NO_THEANO"
        if not te._ready(te.ENV_DIR):
            return False, f"no Theano venv at {te.ENV_DIR} (built by `python -m tests.setup_envs`)"
        return True, ""
    if tier == "opencv":
        try:
            import cv2  # noqa: F401
        except ImportError as e:
            return False, f"cv2 does not import: {e}"
        return True, ""
    return True, ""


def hint(tiers) -> str:
    """How to get rid of the failure: build the tier, or opt out explicitly."""
    names = ",".join(tiers)
    return (f"build it (`make legacy-envs`, see docs/contributing.md) or, on a machine that cannot, "
            f"set {ALLOW_VAR}={names} (or =1)")
