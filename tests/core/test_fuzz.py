"""Seeded fuzzing of every file Migrator reads: mutated prototxts, caffemodels, Lasagne
pickles and .npz files (issue 11).

Each case must end either in a loaded model or in a one-line :class:`MigratorError` naming
the file -- never another exception (a traceback, exit 1), never memory far beyond the
input, never code run from a pickle, never an output file.  The cases run in-process in one
worker subprocess (so its peak RSS, VmHWM, can be measured and no state leaks into the test
process); a handful go through the CLI to check exit 2, one line on stderr, no output.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SEED = 20261130
N_PROTOTXT = 160
N_CAFFEMODEL = 120
N_PICKLE = 140
N_NPZ = 80
#: peak RSS a worker may reach beyond its baseline (the inputs are a few KB; the models
#: declare < 1 MB of parameters): anything near this means something was amplified
MAX_GROWTH_MB = 64


# --------------------------------------------------------------------------------------
# mutations (deterministic for a given rng)
# --------------------------------------------------------------------------------------
_WORDS = ["MAX", "AVE", "STOCHASTIC", "SUM", "PROD", "true", "false", "CAFFE", "CUDNN",
          "ACROSS_CHANNELS", "WITHIN_CHANNEL", "Pooling", "Convolution", "Input", "Python",
          "layer", "bottom", "top", "{", "}", '"', ":"]
_NUMBERS = ["0", "-1", "-7", "1", "3", "2.5", "1e9", "4294967295", "99999999999", "nan", "1e400"]


def mutate_text(text: str, rng: random.Random) -> str:
    toks = list(re.finditer(r"[A-Za-z_]+|-?\d+(\.\d+)?|[{}\":]", text))
    for _ in range(rng.randint(1, 3)):
        tk = rng.choice(toks)
        s = tk.group(0)
        r = rng.random()
        if s[0].isdigit() or s[0] == "-":
            new = rng.choice(_NUMBERS)
        elif r < 0.45:
            new = rng.choice(_WORDS)
        elif r < 0.7:
            new = s[:-1] if len(s) > 1 else ""
        elif r < 0.85:
            new = s + s
        else:
            new = ""
        text = text[:tk.start()] + new + text[tk.end():]
        toks = list(re.finditer(r"[A-Za-z_]+|-?\d+(\.\d+)?|[{}\":]", text)) or toks
        if not toks:
            break
    return text


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 and len(b) > 4:                       # truncate
        return bytes(b[:rng.randrange(1, len(b))])
    if kind == 1:                                      # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2:                                      # random bytes overwritten
        i = rng.randrange(len(b))
        n = rng.randint(1, 16)
        b[i:i + n] = bytes(rng.randrange(256) for _ in range(n))
        return bytes(b)
    if kind == 3:                                      # a chunk duplicated
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 64))
        return bytes(b[:j] + b[i:j] + b[j:])
    if kind == 4:                                      # a chunk deleted
        i = rng.randrange(len(b))
        return bytes(b[:i] + b[i + rng.randint(1, 32):])
    # a large length-like integer planted (varint / little-endian lengths)
    i = rng.randrange(len(b))
    big = rng.choice([b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                      b"\xff\xff\xff\xff\xff\xff\xff\x00"])
    return bytes(b[:i] + big + b[i + len(big):])


# --------------------------------------------------------------------------------------
# the worker: runs every case in-process, reports JSON
# --------------------------------------------------------------------------------------
def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _caffe_seed(d: str):
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("fuzz", seed=0)
    nb.input("data", (1, 3, 12, 12))
    nb.conv("conv1", "data", 4, 3, pad=1)
    nb.bn("bn1", "conv1")
    nb.scale("scale1", "conv1")
    nb.relu("relu1", "conv1")
    nb.pool("pool1", "conv1", kernel=2)
    nb.lrn("norm1", "pool1")
    nb.ip("fc", "norm1", 5)
    nb.softmax("prob", "fc")
    return nb.save(os.path.join(d, "seed.prototxt"), os.path.join(d, "seed.caffemodel"))


#: a small Lasagne network's parameter list in get_all_params order (what the builder
#: child would report): conv W/b, dense W/b
EXPECTED = [["conv", "W", [4, 3, 3, 3]], ["conv", "b", [4]], ["fc", "W", [64, 5]],
            ["fc", "b", [5]]]


def _lasagne_seeds() -> dict[str, bytes]:
    import gzip
    import io
    import pickle

    from migrator.testing import lasagne_models as M
    rng = np.random.default_rng(0)
    vals = [rng.normal(size=s).astype(np.float32) for _, _, s in EXPECTED]
    buf = io.BytesIO()
    np.savez(buf, *vals)
    buf2 = io.BytesIO()
    np.savez_compressed(buf2, *vals)
    return {
        "p2.pkl": pickle.dumps(vals, protocol=2),
        "p4.pkl": pickle.dumps({"param values": vals, "synset words": ["a", "b"]}, protocol=4),
        "p0.pkl": pickle.dumps([v.tolist() for v in vals], protocol=0),
        "py2.pkl": M.py2_pickle_bytes({"param values": vals, "synset words": ["a"]}),
        "gz.pkl": gzip.compress(pickle.dumps(vals, protocol=5)),
        "a.npz": buf.getvalue(),
        "c.npz": buf2.getvalue(),
    }


def run_worker(seed: int, out_dir: str) -> dict:
    from migrator.core.errors import MigratorError
    from migrator.core.importers.caffe import load_caffe
    from migrator.core.importers.lasagne.params import load_param_values
    from migrator.core.mapping.planner import make_plan

    rng = random.Random(seed)
    d = os.path.join(out_dir, "work")
    os.makedirs(d, exist_ok=True)
    proto, model = _caffe_seed(d)
    proto_text = Path(proto).read_text()
    model_bytes = Path(model).read_bytes()
    lseeds = _lasagne_seeds()
    base = _vm("VmHWM")
    counts = {"cases": 0, "loaded": 0, "refused": 0}
    bad: list[str] = []
    messages: list[str] = []

    def case(kind: str, fn, payload_desc: str):
        counts["cases"] += 1
        try:
            fn()
            counts["loaded"] += 1
        except MigratorError as e:
            msg = str(e)
            counts["refused"] += 1
            if "\n" in msg or not msg.strip():
                bad.append(f"{kind} {payload_desc}: bad message {msg!r}")
            if re.search(r"\b\w*(Error|Exception):\s*$", msg) or "MemoryError" in msg:
                bad.append(f"{kind} {payload_desc}: message without a reason {msg!r}")
            if len(messages) < 400:
                messages.append(f"{kind}: {msg[:160]}")
        except BaseException as e:  # noqa: BLE001 - that is what we are looking for
            bad.append(f"{kind} {payload_desc}: {type(e).__name__}: {str(e)[:200]}")

    from migrator.core.importers.caffe import SUPPORTED_TYPES

    def plan_caffe(p, m):
        plan = make_plan(load_caffe(p, m))
        for mp in plan.unsupported:   # a supported type refused must say why (issue 11)
            if mp.source_type in SUPPORTED_TYPES and (
                    not mp.error or mp.error.startswith("unsupported layer type")):
                bad.append(f"{os.path.basename(p)}: supported type {mp.source_type} of "
                           f"'{mp.source}' reported as unsupported without a reason")

    for i in range(N_PROTOTXT):
        p = os.path.join(d, f"m{i % 4}.prototxt")
        with open(p, "w") as f:
            f.write(mutate_text(proto_text, rng))
        case("prototxt", lambda p=p: plan_caffe(p, model), f"#{i}")
    for i in range(N_CAFFEMODEL):
        m = os.path.join(d, f"m{i % 4}.caffemodel")
        with open(m, "wb") as f:
            f.write(mutate_bytes(model_bytes, rng))
        case("caffemodel", lambda m=m: plan_caffe(proto, m), f"#{i}")
    pickles = [k for k in lseeds if k.endswith(".pkl")]
    npzs = [k for k in lseeds if k.endswith(".npz")]
    for kind, ext, keys, n in (("pickle", ".pkl", pickles, N_PICKLE), ("npz", ".npz", npzs, N_NPZ)):
        for i in range(n):
            k = keys[i % len(keys)]
            p = os.path.join(d, f"m{i % 4}{ext}")
            with open(p, "wb") as f:
                f.write(mutate_bytes(lseeds[k], rng))
            case(kind, lambda p=p: load_param_values(p, EXPECTED), f"#{i} from {k}")
    growth = _vm("VmHWM") - base
    return {"counts": counts, "bad": bad, "growth": growth, "messages": messages,
            "pid_files": sorted(os.listdir(out_dir))}


# --------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_result(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fuzz"))
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            "import test_fuzz as T; "
            f"print(json.dumps(T.run_worker({SEED}, {out!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["stderr"] = r.stderr
    res["out"] = out
    return res


def test_fuzz_every_case_is_loaded_or_refused_in_one_line(fuzz_result):
    c = fuzz_result["counts"]
    assert c["cases"] == N_PROTOTXT + N_CAFFEMODEL + N_PICKLE + N_NPZ
    assert not fuzz_result["bad"], "\n".join(fuzz_result["bad"][:20])
    # the mutations really do break things: most cases are refused
    assert c["refused"] > c["cases"] // 2, c
    print(f"fuzz: {c['cases']} cases, {c['refused']} refused with one line, {c['loaded']} loaded "
          f"(harmless mutations), worker peak growth {fuzz_result['growth'] / 2**20:.1f} MiB")


def test_fuzz_memory_stays_bounded(fuzz_result):
    assert fuzz_result["growth"] < MAX_GROWTH_MB * 2**20, fuzz_result["growth"]


def test_fuzz_prints_no_numpy_warnings_and_writes_nothing(fuzz_result):
    assert "Warning" not in fuzz_result["stderr"], fuzz_result["stderr"][-2000:]
    assert fuzz_result["pid_files"] == ["work"]


def test_fuzz_is_deterministic():
    a = [mutate_bytes(b"0123456789abcdef" * 4, random.Random(7)) for _ in range(3)]
    b = [mutate_bytes(b"0123456789abcdef" * 4, random.Random(7)) for _ in range(3)]
    assert a == b


# ---- a handful through the CLI: exit 2, one line, no traceback, no output -------------------
def _cli(args, cwd):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "migrator", *args], capture_output=True, check=False,
                          text=True, timeout=300, cwd=cwd, env=env)


def _cli_cases(tmp):
    from migrator.testing import hostile as H
    from migrator.testing import lasagne_models as M
    rng = random.Random(SEED)
    proto, model = _caffe_seed(str(tmp))
    text = Path(proto).read_text()
    data = Path(model).read_bytes()
    cases = []
    for i in range(2):
        p = tmp / f"cli{i}.prototxt"
        while True:   # a mutation that the importer refuses (checked in-process first)
            t = mutate_text(text, rng)
            p.write_text(t)
            try:
                from migrator.core.importers.caffe import load_caffe
                from migrator.core.mapping.planner import make_plan
                if make_plan(load_caffe(str(p), model)).unsupported:
                    break
            except Exception:  # noqa: BLE001
                break
        cases.append([str(p), model])
    m = tmp / "cli.caffemodel"
    m.write_bytes(data[: len(data) // 2])
    cases.append([proto, str(m)])
    b = M.write_script(str(tmp), M.HEADER + '''
def build_model():
    l = InputLayer((None, 3, 6, 6), name='in')
    l = Conv2DLayer(l, 4, 3, name='conv')
    return DenseLayer(l, 5, name='fc')
''')
    for name, blob in [("memo.pkl", H.memo_bomb()), ("lie.npz", H.npz_header_lie()),
                       ("bb8.pkl", H.binbytes8())]:
        p = tmp / name
        p.write_bytes(blob)
        cases.append([b, str(p)])
    return cases


def test_fuzz_cli_cases_exit_2_with_one_line_and_no_output(tmp_path):
    for files in _cli_cases(tmp_path):
        out = tmp_path / "out.keras"
        r = _cli(["convert", *files, "-o", str(out)], str(tmp_path))
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("migrator:")]
        assert r.returncode == 2, (files, r.returncode, r.stderr[-1500:])
        assert len(err) == 1 and err[0].startswith("migrator: error: "), r.stderr[-1500:]
        assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr[-1500:]
        assert os.path.basename(files[-1]) in err[0] or os.path.basename(files[0]) in err[0]
        assert not out.exists()
        assert not [n for n in os.listdir(tmp_path) if ".tmp" in n or n.endswith(".report.json")]


if __name__ == "__main__":   # python tests/core/test_fuzz.py [seed]: print the refusals
    res = run_worker(int(sys.argv[1]) if len(sys.argv) > 1 else SEED,
                     __import__("tempfile").mkdtemp())
    print(json.dumps({k: v for k, v in res.items() if k != "messages"}, indent=1))
    print("\n".join(res["messages"]))
