"""A real Caffe to test against: a Debian 11 (bullseye) root with Debian's ``python3-caffe``.

``ensure_caffe_root()`` builds it once with ``debootstrap`` (about 3 minutes and 1 GB) into
``<repo>/.legacy/caffe-root`` (git-ignored) and returns its path; the tests then run the legacy bridge
as ``chroot <root> python3``.  A stamp file written after a successful build and check marks the root
as complete, so a half-built root (interrupted build) is removed and rebuilt.

Returns ``None`` with a printed reason where that is impossible (not Linux, not root, no chroot, no
debootstrap and no apt-get, no Debian mirror in this machine's apt configuration, debootstrap failed).
Only the Debian mirror that apt is configured with here (``/etc/apt/sources.list``, ``sources.list.d``)
is used: there is no built-in default.  ``tests.setup_envs`` turns a None into a failure of
``make test`` unless the tier is opted out (see ``tests/envs/tiers.py``).  ``MIGRATOR_LEGACY_DIR``
moves the root out of ``<repo>/.legacy``.

Run directly to build: ``python -m tests.envs.caffe_root``.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LEGACY_DIR = Path(os.environ.get("MIGRATOR_LEGACY_DIR") or REPO / ".legacy")
ROOT = LEGACY_DIR / "caffe-root"
STAMP = LEGACY_DIR / "caffe-root.stamp"
SUITE = "bullseye"
PACKAGES = ("python3-caffe", "python3-numpy")
CHECK = "import caffe, numpy, sys; print('%s caffe %s numpy %s' % (sys.version.split()[0], caffe.__version__, numpy.__version__))"

#: Why the last ``ensure_caffe_root()`` returned None (for skip messages).
last_reason: str | None = None
#: Seconds the last build took (None if the root was already there).
last_build_seconds: float | None = None


def _say(msg: str) -> None:
    print(f"[caffe-root] {msg}", file=sys.stderr, flush=True)


def _fail(reason: str) -> None:
    global last_reason
    last_reason = reason
    _say(f"skipped: {reason}")


def debian_mirror(apt_dir: str | Path = "/etc/apt") -> str | None:
    """The Debian archive URI apt uses here (deb822 ``.sources`` or one-line ``.list``), else None."""
    apt_dir = str(apt_dir)
    files = [f"{apt_dir}/sources.list"] + sorted(glob.glob(f"{apt_dir}/sources.list.d/*.sources")) + sorted(
        glob.glob(f"{apt_dir}/sources.list.d/*.list"))
    for path in files:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            m = re.match(r"^URIs:\s*(.+)$", line) or re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if not m:
                continue
            for uri in m.group(1).split():
                uri = uri.rstrip("/")
                # the main archive, not -security / -updates / third-party repositories
                if uri.endswith("/debian") and "security" not in uri:
                    return uri
    return None


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    out = []
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            mnt = line.split()[1].replace("\\040", " ")
            if mnt.startswith(prefix):
                out.append(mnt)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def _remove_root(path: Path) -> None:
    """Delete a half-built root, unmounting anything debootstrap left mounted inside it first."""
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], check=False)
    if _mounts_under(path):
        raise RuntimeError(f"cannot remove {path}: still has mounts inside")
    shutil.rmtree(path, ignore_errors=True)


def check_root(root: Path | str = ROOT, timeout: float = 120) -> str | None:
    """Run the version check inside the root; return its output line, or None when it fails."""
    try:
        p = subprocess.run(["chroot", str(root), "python3", "-c", CHECK], capture_output=True, text=True,
                           timeout=timeout, env=_chroot_env(), check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        _say(f"check failed: {e}")
        return None
    if p.returncode != 0:
        _say("check failed: " + " | ".join(p.stderr.strip().splitlines()[-3:]))
        return None
    return p.stdout.strip().splitlines()[-1]


def _chroot_env() -> dict:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
           "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp", "GLOG_minloglevel": "2"}
    return env


def ensure_caffe_root(rebuild: bool = False) -> str | None:
    """Return the path of a working Caffe root, building it first if needed; None (+ reason) if impossible."""
    global last_reason, last_build_seconds
    last_reason = None
    last_build_seconds = None
    if os.environ.get("MIGRATOR_NO_CAFFE_ROOT", "").strip().lower() not in ("", "0", "no", "false", "off"):
        return _fail("MIGRATOR_NO_CAFFE_ROOT is set")
    if STAMP.exists() and (ROOT / "usr/bin/python3").exists() and not rebuild:
        return str(ROOT)
    if not sys.platform.startswith("linux"):
        return _fail("needs Linux (debootstrap + chroot)")
    if os.geteuid() != 0:
        return _fail("needs root for debootstrap/chroot (run `sudo make legacy-envs` once)")
    if shutil.which("chroot") is None:
        return _fail("chroot not found")
    mirror = debian_mirror()
    if mirror is None:
        return _fail("no Debian mirror in this machine's apt configuration (/etc/apt/sources.list, "
                     "/etc/apt/sources.list.d/): debootstrap needs one")
    if shutil.which("debootstrap") is None:
        if shutil.which("apt-get") is None:
            return _fail("debootstrap not installed and no apt-get to install it")
        _say("installing debootstrap with apt-get")
        p = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], capture_output=True, text=True,
                           check=False)
        if p.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            p = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], capture_output=True, text=True,
                           check=False)
        if p.returncode != 0 or shutil.which("debootstrap") is None:
            return _fail("could not install debootstrap: " + " | ".join(p.stderr.strip().splitlines()[-2:]))
    LEGACY_DIR.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    if ROOT.exists():
        _say(f"removing incomplete root {ROOT}")
        try:
            _remove_root(ROOT)
        except RuntimeError as e:
            return _fail(str(e))
    _say(f"building Debian {SUITE} root with {', '.join(PACKAGES)} from {mirror} (about 3 min, 1 GB)")
    t0 = time.monotonic()
    log = LEGACY_DIR / "caffe-root.log"
    with open(log, "w") as fh:
        p = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE,
                            str(ROOT), mirror], stdout=fh, stderr=subprocess.STDOUT, check=False)
    if p.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        return _fail(f"debootstrap failed (exit {p.returncode}, log {log}): {tail}")
    # remove the downloaded .debs (about 300 MB) – not needed to run
    shutil.rmtree(ROOT / "var/cache/apt/archives", ignore_errors=True)
    (ROOT / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (ROOT / "tmp").mkdir(exist_ok=True)
    os.chmod(ROOT / "tmp", 0o1777)
    line = check_root(ROOT)
    if line is None:
        return _fail(f"root built at {ROOT} but `import caffe` fails inside it")
    STAMP.write_text(line + "\n")
    last_build_seconds = time.monotonic() - t0
    _say(f"ready: {line} (built in {last_build_seconds:.0f} s)")
    return str(ROOT)


if __name__ == "__main__":
    r = ensure_caffe_root(rebuild="--rebuild" in sys.argv)
    print(r if r else f"unavailable: {last_reason}")
