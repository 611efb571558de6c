"""The real-Theano test environment: a venv with Theano 1.0.5 + Lasagne 0.1 + numpy 1.23.5.

:func:`ensure_theano_env` builds it once under ``<repo>/.legacy/theano-venv`` (git-ignored)
and returns its python, or ``None`` (with the reason printed and kept in
:data:`last_reason`) when it cannot be built (no suitable Python, no package index, ...).
Later calls only check a ready-marker (milliseconds).  Called by ``tests/setup_envs.py``
(``make test``) and by the test session fixtures.

Facts found while building it (Theano 1.0.5 on Python 3.11, numpy 1.23.5):

* Theano's default ``blas.ldflags`` reads ``numpy.distutils.__config__.blas_opt_info``,
  which numpy 1.23 no longer has -> import error.  ``blas.ldflags`` must be given: ``-lopenblas``
  when Debian's libopenblas is installed, else empty (Theano then uses numpy's C-API BLAS,
  correct and fast enough for tests).  :func:`theano_env_vars` sets it.
* Lasagne 0.1 imports ``theano.tensor.signal.downsample``, which Theano 1.0 removed: a small
  compatibility module mapping ``max_pool_2d`` onto ``theano.tensor.signal.pool.pool_2d`` is
  written into the venv's Theano.
* ``cxx`` is g++ when present (C implementations); without a compiler Theano falls back
  to slow Python implementations (``cxx=`` empty).

    python -m tests.envs.theano_env      # build (or check) and print the python path
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = Path(os.environ.get("MIGRATOR_LEGACY_DIR") or ROOT / ".legacy") / "theano-venv"
PACKAGES = ["theano==1.0.5", "numpy==1.23.5", "scipy==1.11.4", "six", "Lasagne==0.1"]
SPEC = "v3:" + " ".join(PACKAGES)
MARKER = ".migrator-ready"

last_reason: str | None = None
_cached: str | None = None

_DOWNSAMPLE_COMPAT = '''"""Compatibility alias written by Migrator's test set-up: Theano 1.0 removed
theano.tensor.signal.downsample, which Lasagne 0.1 imports."""
from theano.tensor.signal import pool as _pool
from theano.tensor.signal.pool import Pool as DownsampleFactorMax  # noqa: F401


def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0), mode="max"):
    return _pool.pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st, pad=padding,
                         mode=mode)
'''

_SITECUSTOMIZE = '''"""Written by Migrator's test set-up: default Theano flags for this venv, so that its
python imports Theano without extra environment (numpy 1.23 breaks Theano's BLAS probe)."""
import os as _os

_flags = _os.environ.get("THEANO_FLAGS", "")
_add = []
if "blas.ldflags" not in _flags:
    _add.append("blas.ldflags=%s")
if "base_compiledir" not in _flags:
    _add.append("base_compiledir=%s")
if _add:
    _os.environ["THEANO_FLAGS"] = ",".join([f for f in [_flags] + _add if f])
'''

_CHECK = r'''
import time, json, sys
t = time.time()
import numpy as np
import theano, theano.tensor as T
from theano.tensor.signal.pool import pool_2d
import lasagne
x = T.tensor4("x"); w = T.tensor4("w")
f = theano.function([x, w], [T.nnet.conv2d(x, w, border_mode="half"),
                             pool_2d(x, ws=(2, 2), ignore_border=False, mode="max")])
a = np.arange(2 * 3 * 5 * 5, dtype="float32").reshape(2, 3, 5, 5)
b = np.ones((4, 3, 3, 3), dtype="float32")
r = f(a, b)
assert r[0].shape == (2, 4, 5, 5) and r[1].shape == (2, 3, 3, 3)
print(json.dumps({"theano": theano.__version__, "lasagne": lasagne.__version__,
                  "numpy": np.__version__, "python": sys.version.split()[0],
                  "check_s": time.time() - t}))
'''


def _say(msg: str) -> None:
    print(f"[theano_env] {msg}", file=sys.stderr, flush=True)


def _fail(reason: str) -> None:
    global last_reason
    last_reason = reason
    _say(f"not available: {reason}")


def env_python(env_dir: Path = ENV_DIR) -> Path:
    return env_dir / "bin" / "python"


def blas_ldflags() -> str:
    """``-lopenblas`` when the OpenBLAS development link is present, else '' (numpy C-API)."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if os.path.exists(os.path.join(d, "libopenblas.so")):
            return "-lopenblas"
    return ""


def theano_env_vars(env_dir: Path = ENV_DIR) -> dict[str, str]:
    """Environment for running the venv's python with Theano (THEANO_FLAGS etc.)."""
    cxx = shutil.which("g++") or ""
    flags = [f"base_compiledir={env_dir / 'compiledir'}", f"blas.ldflags={blas_ldflags()}",
             f"cxx={cxx}", "floatX=float32"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["THEANO_FLAGS"] = ",".join(flags)
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _base_pythons() -> list[str]:
    """Interpreters that can host Theano 1.0.5 + numpy 1.23.5 (CPython 3.8-3.11);
    ``MIGRATOR_THEANO_BASE_PYTHON`` names the only one to try."""
    forced = os.environ.get("MIGRATOR_THEANO_BASE_PYTHON")
    if forced:
        return [forced] if os.path.exists(forced) else []
    cands = []
    if (3, 8) <= sys.version_info[:2] <= (3, 11):
        cands.append(getattr(sys, "_base_executable", None) or sys.executable)
    for name in ("python3.11", "python3.10", "python3.9", "python3.8"):
        p = shutil.which(name)
        if p:
            cands.append(p)
    pyenv = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"
    if pyenv.is_dir():
        for v in sorted(pyenv.iterdir(), reverse=True):
            for minor in ("3.11", "3.10", "3.9", "3.8"):
                if v.name.startswith(minor + "."):
                    cands.append(str(v / "bin" / f"python{minor}"))
    seen, out = set(), []
    for c in cands:
        if c and c not in seen and os.path.exists(c):
            seen.add(c)
            out.append(c)
    return out


def _ready(env_dir: Path) -> bool:
    m = env_dir / MARKER
    try:
        info = json.loads(m.read_text())
    except (OSError, ValueError):
        return False
    return info.get("spec") == SPEC and env_python(env_dir).exists()


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd, timeout, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, env=env)


def _build(env_dir: Path) -> str | None:
    bases = _base_pythons()
    if not bases:
        return _fail("no Python 3.8-3.11 interpreter found (Theano 1.0.5 with numpy 1.23.5 "
                     "needs one)")
    tmp = Path(tempfile.mkdtemp(prefix="theano-venv.tmp-", dir=env_dir.parent))
    try:
        last = ""
        for base in bases:
            shutil.rmtree(tmp, ignore_errors=True)
            _say(f"creating the venv with {base} ...")
            r = _run([base, "-m", "venv", str(tmp)], 300)
            if r.returncode != 0:
                last = f"{base} -m venv failed: {r.stdout.decode(errors='replace').strip()[-300:]}"
                continue
            py = str(env_python(tmp))
            _say("installing " + " ".join(PACKAGES) + " ...")
            r = _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      "--no-input", *PACKAGES], 1200)
            if r.returncode != 0:
                out = [ln for ln in r.stdout.decode(errors="replace").splitlines()
                       if ln.strip() and "is ignored" not in ln]
                last = f"pip install failed with {base}: {' | '.join(out[-3:])[-400:]}"
                continue
            site = _run([py, "-c", ("import theano.tensor.signal as s, os; "
                                    "print(os.path.dirname(s.__file__))")], 300,
                        env=theano_env_vars(tmp))
            if site.returncode != 0:
                last = f"theano does not import with {base}: " \
                       f"{site.stdout.decode(errors='replace').strip()[-300:]}"
                continue
            sig_dir = Path(site.stdout.decode().strip().splitlines()[-1])
            (sig_dir / "downsample.py").write_text(_DOWNSAMPLE_COMPAT)
            # sig_dir = <site-packages>/theano/tensor/signal
            (sig_dir.parents[2] / "sitecustomize.py").write_text(
                _SITECUSTOMIZE % (blas_ldflags(), env_dir / "compiledir"))
            chk = _run([py, "-c", _CHECK], 600, env=theano_env_vars(tmp))
            if chk.returncode != 0:
                last = f"the Theano check failed with {base}: " \
                       f"{chk.stdout.decode(errors='replace').strip()[-400:]}"
                continue
            info = json.loads(chk.stdout.decode().strip().splitlines()[-1])
            info.update({"spec": SPEC, "base_python": base, "blas_ldflags": blas_ldflags()})
            (tmp / MARKER).write_text(json.dumps(info, indent=1))
            if env_dir.exists():
                shutil.rmtree(env_dir)
            tmp.rename(env_dir)
            # the compiledir is keyed by path: recompile under the final location on first use
            return str(env_python(env_dir))
        return _fail(last or "could not build the environment")
    except subprocess.TimeoutExpired as e:
        return _fail(f"timed out: {' '.join(map(str, e.cmd))[:120]}")
    except OSError as e:
        return _fail(f"{type(e).__name__}: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_theano_env(env_dir: Path | str | None = None) -> str | None:
    """Build (once) and return the python of the Theano venv, or None with a printed reason.

    ``MIGRATOR_NO_THEANO=1`` in the environment disables it (returns None).  ``MIGRATOR_LEGACY_DIR``
    moves the default location out of ``<repo>/.legacy``.
    """
    global _cached, last_reason
    env_dir = Path(env_dir) if env_dir else ENV_DIR
    if env_dir == ENV_DIR and _cached:
        return _cached
    if os.environ.get("MIGRATOR_NO_THEANO", "").strip().lower() not in ("", "0", "no", "false", "off"):
        return _fail("disabled by MIGRATOR_NO_THEANO")
    if _ready(env_dir):
        last_reason = None
        path = str(env_python(env_dir))
    else:
        with _lock(env_dir.parent / ".theano-venv.lock"):
            if _ready(env_dir):
                path = str(env_python(env_dir))
            else:
                t0 = time.monotonic()
                path = _build(env_dir)
                if path:
                    _say(f"built in {time.monotonic() - t0:.0f} s: {path}")
    if path and env_dir == ENV_DIR:
        _cached = path
    return path


def env_info(env_dir: Path = ENV_DIR) -> dict:
    try:
        return json.loads((env_dir / MARKER).read_text())
    except (OSError, ValueError):
        return {}


class TheanoScriptError(RuntimeError):
    pass


def run_theano(python: str, script: str, arrays: dict[str, np.ndarray], *,
               timeout: float = 600) -> dict[str, np.ndarray]:
    """Run ``script`` with the Theano venv's python; exchange arrays through npz files.

    The script sees ``IN`` (a dict of the input arrays) and must fill the dict ``OUT``; both
    are saved/loaded by this wrapper (``np.savez``).  Returns OUT as numpy arrays.
    """
    with tempfile.TemporaryDirectory(prefix="migrator-theano-") as td:
        fin, fout = os.path.join(td, "in.npz"), os.path.join(td, "out.npz")
        np.savez(fin, **arrays)
        wrapper = ("import numpy as np\n"
                   f"_z = np.load({fin!r})\nIN = {{k: _z[k] for k in _z.files}}\nOUT = {{}}\n"
                   + script +
                   f"\nnp.savez({fout!r}, **{{k: np.asarray(v) for k, v in OUT.items()}})\n")
        path = os.path.join(td, "script.py")
        with open(path, "w") as f:
            f.write(wrapper)
        r = subprocess.run([python, path], check=False, cwd=td, env=theano_env_vars(Path(python).parents[1]),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        if r.returncode != 0:
            raise TheanoScriptError(r.stdout.decode(errors="replace")[-4000:])
        with np.load(fout) as z:
            return {k: z[k] for k in z.files}


if __name__ == "__main__":
    t = time.monotonic()
    p = ensure_theano_env()
    print(p or f"unavailable: {last_reason}", f"({time.monotonic() - t:.1f} s)", env_info())
    sys.exit(0 if p else 1)
