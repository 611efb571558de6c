"""A model and its report are one set: a save interrupted at any moment leaves the old set or,
once the next save (or recover) has run, the complete new one -- never a model beside another
run's report."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from migrator.core import filesets
from migrator.testing.caffe_net import NetBuilder
from tests.cli.test_cli import ENV, REPO


def _moves(tmp_path, n=4):
    targets = [tmp_path / f"f{i}.txt" for i in range(n)]
    for t in targets:
        t.write_text("old")
    temps = []
    for t in targets:
        tmp = tmp_path / f".{t.name}.migrator-{os.getpid()}-0000abcd.tmp.txt"
        tmp.write_text("new")
        temps.append((str(tmp), str(t)))
    return temps, targets


@pytest.mark.parametrize("stop_after", [0, 1, 2, 3])
def test_interrupted_commit_is_finished_by_recover(tmp_path, monkeypatch, stop_after):
    moves, targets = _moves(tmp_path)
    real = os.replace
    calls = {"n": 0}

    def flaky(a, b):
        if str(a).endswith(".part"):          # the journal itself
            return real(a, b)
        if calls["n"] == stop_after:
            raise KeyboardInterrupt           # the process dies between two moves
        calls["n"] += 1
        return real(a, b)

    monkeypatch.setattr(filesets.os, "replace", flaky)
    journal = filesets.journal_path(str(targets[0]))
    with pytest.raises(KeyboardInterrupt):
        filesets.commit(moves, journal)
    monkeypatch.setattr(filesets.os, "replace", real)
    assert os.path.exists(journal)
    assert sorted(t.read_text() for t in targets).count("new") == stop_after   # a mix, for now
    done = filesets.recover(str(tmp_path))
    assert len(done) == 4 - stop_after and not os.path.exists(journal)
    assert [t.read_text() for t in targets] == ["new"] * 4


def test_no_journal_means_the_old_set(tmp_path):
    moves, targets = _moves(tmp_path)
    assert filesets.recover(str(tmp_path)) == []
    assert [t.read_text() for t in targets] == ["old"] * 4


def _net(folder, name, seed):
    nb = NetBuilder(name, seed=seed)
    nb.input("data", (1, 3, 12, 12))
    nb.conv("conv1", "data", 4, 3, pad=1)
    nb.relu("relu1", "conv1", top="conv1")
    nb.ip("fc", "conv1", 5)
    return nb.save(folder / f"{name}.prototxt", folder / f"{name}.caffemodel")


def _set_of(out):
    """Which net each file of the saved set belongs to ('alpha' / 'beta')."""
    with zipfile.ZipFile(out / "m.keras") as z:
        cfg = json.loads(z.read("config.json"))
    owners = {"m.keras": cfg["config"]["name"].split("_")[0]}
    for name in ("m.report.json", "m.report.md", "m.report.html", "m.tflite.report.json"):
        p = out / name
        if p.exists():
            text = p.read_text()
            owners[name] = "alpha" if "alpha.prototxt" in text else "beta" if "beta.prototxt" in text else "?"
    return owners


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_mix(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a, b = _net(src, "alpha", 1), _net(src, "beta", 2)
    out = tmp_path / "out"
    out.mkdir()
    run = [sys.executable, "-m", "migrator", "convert"]
    r = subprocess.run(run + [*map(str, a), "-o", str(out / "m.keras")], capture_output=True, text=True,
                       env=ENV, cwd=REPO, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = subprocess.run(run + [*map(str, b), "-o", str(out / "m.keras"), "--force"], capture_output=True,
                       text=True, env=ENV, cwd=REPO, timeout=600, check=False)
    full = time.monotonic() - t0
    assert r.returncode == 0 and set(_set_of(out).values()) == {"beta"}
    rng = random.Random(7)
    seen = []
    for k in range(10):
        src_net = a if k % 2 == 0 else b
        p = subprocess.Popen(run + [*map(str, src_net), "-o", str(out / "m.keras"), "--force"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
        time.sleep(rng.uniform(0.5, full))
        p.send_signal(signal.SIGKILL)
        p.wait()
        filesets.recover(str(out))           # what the next save into the folder does first
        owners = _set_of(out)
        seen.append(owners["m.keras"])
        assert len(set(owners.values())) == 1, (k, owners)
    print("sets after each kill:", seen)
    # the next save finishes any interrupted commit and sweeps the killed processes' temporaries
    time.sleep(6)                            # tempfiles.MIN_AGE_S: nothing younger is touched
    r = subprocess.run(run + [*map(str, a), "-o", str(out / "m.keras"), "--force"], capture_output=True,
                       text=True, env=ENV, cwd=REPO, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert set(_set_of(out).values()) == {"alpha"}
    left = [n for n in os.listdir(out) if ".migrator-" in n and ".tmp" in n]
    assert not left, left
