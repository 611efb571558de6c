"""Temp files of a killed save: the next save to the folder removes Migrator's stale
leftovers (dead creator pid, or old files of the pre-pid naming) and nothing else."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from migrator.core import saving, tempfiles


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_save_sweeps_only_stale_leftovers_of_ours(tmp_path):
    dead = _dead_pid()
    d = tmp_path
    stale = d / f".nsfw.keras.migrator-{dead}-0123abcd.tmp.keras"          # killed save
    legacy = d / ".nsfw.keras.k2j_8xq1.tmp.keras"                          # pre-pid naming
    fresh_dead = d / f".other.h5.migrator-{dead}-89abcdef.tmp.h5"           # too young
    live = d / f".mine.keras.migrator-{os.getpid()}-deadbeef.tmp.keras"     # a running save
    user_files = [d / "nsfw.keras", d / ".nsfw.keras.backup", d / "notes.tmp.keras",
                  d / ".x.keras.migrator-12-zz.tmp.keras"]                 # not our pattern
    for p in [stale, legacy, fresh_dead, live, *user_files]:
        p.write_bytes(b"x")
    for p in [stale, legacy, live, *user_files]:
        _age(p, 3600)
    saving.write_text(str(d / "report.json"), "{}")
    left = set(os.listdir(d))
    assert stale.name not in left and legacy.name not in left
    assert fresh_dead.name in left and live.name in left
    assert all(p.name in left for p in user_files)
    assert "report.json" in left
    # no temp file of this save remains, and the temp name carries our pid
    assert not [n for n in left if f"migrator-{os.getpid()}-" in n and n != live.name]
    name = os.path.basename(tempfiles.temp_path(str(d), "a.keras", ".keras"))
    assert name.startswith(f".a.keras.migrator-{os.getpid()}-") and name.endswith(".tmp.keras")


def test_kill_9_during_a_save_leaves_a_file_the_next_save_removes(tmp_path):
    """A child process starts a save whose writer blocks; SIGKILL it mid-write; the next
    save in that folder removes its temp file (the old output stays intact)."""
    out = tmp_path / "model.keras"
    out.write_bytes(b"old model")
    code = ("import sys, time\n"
            "from migrator.core import saving\n"
            "def w(tmp):\n"
            "    open(tmp, 'wb').write(b'half')\n"
            "    print(tmp, flush=True)\n"
            "    time.sleep(60)\n"
            f"saving.atomic_write({str(out)!r}, w, force=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    tmp = p.stdout.readline().strip()
    assert os.path.exists(tmp)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stdout.close()
    assert os.path.exists(tmp) and out.read_bytes() == b"old model"
    _age(tmp, tempfiles.MIN_AGE_S + 1)
    saving.write_text(str(tmp_path / "r.json"), "{}")
    assert not os.path.exists(tmp)
    assert out.read_bytes() == b"old model"
