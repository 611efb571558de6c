"""A whole model collection in one run: find the models in a folder tree, convert and verify
each in its own process (a time and a memory limit per model), go on after a failure, and keep
an index (``index.json`` + ``index.html``) of what happened to every model.

Discovery (:func:`discover`):

* **Caffe** — a folder holding ``.caffemodel`` files and ``.prototxt`` files: the deploy net is
  the prototxt whose name says ``deploy``; otherwise the only prototxt that is not a
  ``train``/``val``/``solver`` file.  One model per ``.caffemodel``.  A folder whose choice is
  ambiguous, or a deploy net without weights, is listed as a bad file (never skipped silently).
* **Lasagne** — a builder script (``.py`` defining the builder function, ``build_model`` by
  default) beside parameter files (``.pkl``, ``.pickle``, ``.npz``): one model per parameter file.
  In a folder with no builder script, a ``.pkl`` / ``.pickle`` that holds a whole pickled network
  (it names ``lasagne.layers`` or ``nolearn.lasagne`` classes; read as bytes, nothing unpickled)
  is a model of its own, opened without a script.
* A per-model mapping file ``<weights stem>.mapping.json`` (or ``mapping.json`` in the folder)
  is used for that model; ``--mapping`` applies to the others.
* A LIST file instead of a folder: one model per line, its files separated by spaces.

Each model runs ``python -m migrator convert`` in a fresh process group (its own exit code,
stdout and stderr say what happened: the command line's contract), so a crash, a hang or a
memory blow-up of one model never takes the batch down.  The index is rewritten atomically
after every model; a re-run skips the models already verified (their outputs still there)
unless ``force``; an interrupt stops the current model and leaves the index of what finished.

Statuses: ``verified``, ``verification failed`` (at the first divergent layer), ``refused``
(a layer type or setting Migrator does not convert, named), ``bad file`` (the one-line reason),
``timed out``, ``out of memory``, ``crashed``.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import MigratorError

INDEX_SCHEMA = 1
CAFFE_ARCH = (".prototxt", ".pbtxt")
LASAGNE_PARAMS = (".pkl", ".pickle", ".npz")
LASAGNE_NETWORK_PICKLES = (".pkl", ".pickle")
#: what a whole pickled network names near its start (the class of the object it holds, or of
#: its first layer), whatever the pickle protocol; a parameter file names none of them
_NETWORK_MARKS = (b"lasagne.layers", b"nolearn.lasagne")
_SNIFF_BYTES = 1 << 20
_NOT_DEPLOY = re.compile(r"(train|solver|val|test_net)", re.IGNORECASE)

STATUSES = ("verified", "verification failed", "refused", "bad file", "timed out", "out of memory",
            "crashed", "interrupted")


@dataclass
class ModelEntry:
    """One model found in the collection."""

    name: str                        # unique, path-like ('zoo/alexnet/bvlc_alexnet')
    framework: str                   # 'caffe' | 'lasagne' | '' (bad entries)
    files: list[str]
    mapping: str | None = None
    problem: str | None = None       # set when discovery already knows it cannot be converted


@dataclass
class ModelOutcome:
    name: str
    framework: str
    files: list[str]
    status: str
    detail: str = ""
    layer: str | None = None         # the first divergent layer / the refused layer
    outputs: list[str] = field(default_factory=list)
    report: str | None = None
    worst_layer: str | None = None
    worst_max_rel: float | None = None
    top1_agreement: float | None = None
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    mapping: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BatchOptions:
    out_dir: str
    mapping: str | None = None
    runtime: str = "builtin"
    fmt: str | None = None                  # --format of the main output (default keras)
    also: Sequence[str] = ()
    images: str | None = None               # verify on this input set too (compare --images)
    timeout_s: float = 1800.0
    memory_mb: float | None = None
    force: bool = False
    builder_function: str = "build_model"
    python: str = sys.executable
    plugins: Sequence[str] = ()             # --plugin files given to every model's process


# ----------------------------------------------------------------------------------------------
# discovery
# ----------------------------------------------------------------------------------------------
def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _defines(path: str, function: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return False
    return re.search(rf"^\s*def\s+{re.escape(function)}\s*\(", text, re.MULTILINE) is not None


def is_network_pickle(path: str) -> bool:
    """Whether ``path`` looks like a whole pickled Lasagne network (or nolearn net) rather than a
    parameter file: its first MiB names a ``lasagne.layers`` / ``nolearn.lasagne`` class.  The
    bytes are only searched, never unpickled (the convert process opens it with the allow-list
    unpickler, which refuses anything else by name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    return any(m in head for m in _NETWORK_MARKS)


def _mapping_for(folder: str, stem: str) -> str | None:
    for cand in (f"{stem}.mapping.json", "mapping.json"):
        p = os.path.join(folder, cand)
        if os.path.isfile(p):
            return p
    return None


def _deploy_prototxt(protos: list[str]) -> tuple[str | None, str | None]:
    """(the deploy prototxt, or None and why)."""
    named = [p for p in protos if "deploy" in os.path.basename(p).lower()]
    if len(named) == 1:
        return named[0], None
    if len(named) > 1:
        return None, "several deploy prototxt files: " + ", ".join(os.path.basename(p) for p in named)
    rest = [p for p in protos if not _NOT_DEPLOY.search(os.path.basename(p))]
    if len(rest) == 1:
        return rest[0], None
    if not rest:
        return None, "only training/solver prototxt files (" + ", ".join(os.path.basename(p) for p in protos) + ")"
    return None, ("several prototxt files and none named deploy: "
                  + ", ".join(os.path.basename(p) for p in rest))


def discover(root: str, *, builder_function: str = "build_model") -> list[ModelEntry]:
    """The models under ``root`` (a folder tree), or the models a LIST file names."""
    if os.path.isfile(root):
        return _from_list(root)
    if not os.path.isdir(root):
        raise MigratorError("no such folder or list file", file=root)
    found: list[ModelEntry] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files = sorted(f for f in files if not f.startswith("."))
        paths = [os.path.join(folder, f) for f in files]
        weights = [p for p in paths if p.lower().endswith(".caffemodel")]
        protos = [p for p in paths if p.lower().endswith(CAFFE_ARCH)]
        if weights:
            proto, why = _deploy_prototxt(protos) if protos else (None, "no .prototxt beside the .caffemodel")
            for w in weights:
                stem = os.path.splitext(os.path.basename(w))[0]
                name = _rel(os.path.join(folder, stem), root)
                if proto is None:
                    found.append(ModelEntry(name, "caffe", [w], problem=why))
                else:
                    found.append(ModelEntry(name, "caffe", [proto, w], mapping=_mapping_for(folder, stem)))
        elif protos:
            proto, _why = _deploy_prototxt(protos)
            if proto is not None and "deploy" in os.path.basename(proto).lower():
                stem = os.path.splitext(os.path.basename(proto))[0]
                found.append(ModelEntry(_rel(os.path.join(folder, stem), root), "caffe", [proto],
                                        problem="no .caffemodel beside the deploy prototxt"))
        builders = [p for p in paths if p.endswith(".py") and _defines(p, builder_function)]
        params = [p for p in paths if p.lower().endswith(LASAGNE_PARAMS)]
        if not builders:     # no script claims them: whole pickled networks are models alone
            for p in params:
                if p.lower().endswith(LASAGNE_NETWORK_PICKLES) and is_network_pickle(p):
                    stem = os.path.splitext(os.path.basename(p))[0]
                    found.append(ModelEntry(_rel(os.path.join(folder, stem), root), "lasagne", [p],
                                            mapping=_mapping_for(folder, stem)))
        if builders and params:
            if len(builders) > 1:
                found.append(ModelEntry(_rel(folder, root) or ".", "lasagne", builders + params,
                                        problem="several builder scripts define "
                                                f"{builder_function}(): " + ", ".join(
                                                    os.path.basename(b) for b in builders)))
                continue
            for p in params:
                stem = os.path.splitext(os.path.basename(p))[0]
                found.append(ModelEntry(_rel(os.path.join(folder, stem), root), "lasagne",
                                        [builders[0], p], mapping=_mapping_for(folder, stem)))
    return _short_names(found)


def _short_names(found: list[ModelEntry]) -> list[ModelEntry]:
    """A folder holding one model names it by the folder alone (``zoo/alexnet``, not
    ``zoo/alexnet/deploy``); folders with several models keep the file stem."""
    per_folder: dict[str, int] = {}
    for e in found:
        folder = e.name.rsplit("/", 1)[0] if "/" in e.name else ""
        per_folder[folder] = per_folder.get(folder, 0) + 1
    for e in found:
        folder = e.name.rsplit("/", 1)[0] if "/" in e.name else ""
        if folder and per_folder[folder] == 1:
            e.name = folder
    return found


def _from_list(path: str) -> list[ModelEntry]:
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            files = [p if os.path.isabs(p) else os.path.join(base, p) for p in line.split()]
            fw = "caffe" if any(p.lower().endswith(".caffemodel") for p in files) else "lasagne"
            weights = files[-1]
            name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", os.path.splitext(_rel(weights, base))[0]) or f"model{i}"
            missing = [p for p in files if not os.path.exists(p)]
            out.append(ModelEntry(name, fw, files,
                                  problem=f"listed file not found: {missing[0]}" if missing else None))
    names = [e.name for e in out]
    for e in out:
        if names.count(e.name) > 1:
            e.name = f"{e.name}_{out.index(e) + 1}"
    return out


_STOP = threading.Event()
_ACTIVE: set[subprocess.Popen] = set()


def stop_all() -> None:
    """Stop the batch from another thread (the CLI's interrupt handler): the current model's
    process group is killed, the batch writes its index of what finished and returns."""
    _STOP.set()
    for proc in list(_ACTIVE):
        _kill_group(proc)


# ----------------------------------------------------------------------------------------------
# one model in its own process
# ----------------------------------------------------------------------------------------------
def _rss_mb(pgid: int) -> float:
    """Resident memory of every process in the group (Linux /proc; 0 elsewhere)."""
    total = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:           # field 5: process group
                continue
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")   # field 24: rss pages
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


@dataclass
class _Run:
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float
    killed: str | None          # 'timeout' | 'memory' | 'interrupt'


def _run_limited(cmd: list[str], timeout_s: float, memory_mb: float | None,
                 cancel: Callable[[], bool] | None) -> _Run:
    t0 = time.monotonic()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    _ACTIVE.add(proc)
    peak, killed = 0.0, None
    out_chunks: list[str] = []
    err_chunks: list[str] = []

    def drain(stream, sink):
        for line in stream:
            sink.append(line)

    readers = [threading.Thread(target=drain, args=(proc.stdout, out_chunks), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, err_chunks), daemon=True)]
    for r in readers:
        r.start()
    try:
        while proc.poll() is None:
            time.sleep(0.2)
            peak = max(peak, _rss_mb(proc.pid))
            if time.monotonic() - t0 > timeout_s:
                killed = "timeout"
            elif memory_mb is not None and peak > memory_mb:
                killed = "memory"
            elif _STOP.is_set() or (cancel is not None and cancel()):
                killed = "interrupt"
            if killed:
                _kill_group(proc)
                break
    except KeyboardInterrupt:
        _kill_group(proc)
        raise
    finally:
        _ACTIVE.discard(proc)
    proc.wait()
    for r in readers:
        r.join(2.0)
    return _Run(proc.returncode, "".join(out_chunks), "".join(err_chunks), time.monotonic() - t0, peak, killed)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(3.0)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("migrator:")]
    if not lines:
        tail = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        return tail[-1] if tail else ""
    return lines[-1]


def _strip_prefix(msg: str) -> str:
    for p in ("migrator: error: ", "migrator: verification failed: ", "migrator: internal error: ",
              "migrator: "):
        if msg.startswith(p):
            return msg[len(p):]
    return msg


_REFUSED = ("unsupported layer type", "cannot convert", "refused", "not supported", "is not converted")


def _classify(entry: ModelEntry, run: _Run, out_path: str, report_path: str) -> ModelOutcome:
    o = ModelOutcome(entry.name, entry.framework, entry.files, "crashed", seconds=round(run.seconds, 2),
                     peak_rss_mb=round(run.peak_mb, 1) if run.peak_mb else None, exit_code=run.code)
    if run.killed == "timeout":
        o.status, o.detail = "timed out", f"stopped after {run.seconds:.0f} s"
        return o
    if run.killed == "memory":
        o.status, o.detail = "out of memory", f"stopped at {run.peak_mb:.0f} MB resident"
        return o
    if run.killed == "interrupt":
        o.status, o.detail = "interrupted", "stopped by the user"
        return o
    m = re.search(r"^first divergent layer: (\S+)", run.stdout, re.MULTILINE)
    if run.code == 0:
        o.status = "verified"
        o.outputs = [ln[len("wrote "):].strip() for ln in run.stdout.splitlines() if ln.startswith("wrote ")]
        o.report = report_path if os.path.exists(report_path) else None
        _read_report(o)
    elif run.code == 3:
        o.status = "verification failed"
        o.layer = m.group(1) if m else None
        o.detail = f"first divergent layer {o.layer}" if o.layer else _strip_prefix(_last_error(run.stderr))
        rel = re.search(r"^smallest rtol that would pass every layer: (\S+)", run.stdout, re.MULTILINE)
        if rel:
            o.detail += f"; smallest rtol that would pass: {rel.group(1)}"
    elif run.code == 2:
        msg = _strip_prefix(_last_error(run.stderr))
        o.detail = msg
        o.status = "refused" if any(k in msg for k in _REFUSED) else "bad file"
        lm = re.search(r"layer '([^']+)'", msg) or re.search(r"'([^']+)' \(type", msg)
        o.layer = lm.group(1) if lm else None
    elif run.code in (130, 143):
        o.status, o.detail = "interrupted", "stopped by a signal"
    else:
        o.detail = _strip_prefix(_last_error(run.stderr)) or f"exit code {run.code}"
    return o


def _read_report(o: ModelOutcome) -> None:
    if not o.report:
        return
    try:
        with open(o.report, encoding="utf-8") as f:
            rep = json.load(f)
    except (OSError, ValueError):
        return
    rated = [e for e in rep.get("layers", []) if isinstance(e.get("max_rel"), (int, float))]
    if rated:
        w = max(rated, key=lambda e: e["max_rel"])
        o.worst_layer, o.worst_max_rel = w["source"], float(w["max_rel"])
    topk = (rep.get("verification") or {}).get("topk") or {}
    if isinstance(topk.get("top1_agreement"), (int, float)):
        o.top1_agreement = float(topk["top1_agreement"])


def convert_one(entry: ModelEntry, opts: BatchOptions, cancel: Callable[[], bool] | None = None) -> ModelOutcome:
    """Convert and verify one model in a fresh process; never raises for the model's own faults."""
    if entry.problem:
        return ModelOutcome(entry.name, entry.framework, entry.files, "bad file", detail=entry.problem)
    folder = os.path.join(opts.out_dir, *entry.name.split("/"))
    os.makedirs(folder, exist_ok=True)
    leaf = entry.name.rsplit("/", 1)[-1]
    ext = {"keras": ".keras", "h5": ".h5", "weights": ".weights.h5", "tflite": ".tflite",
           "saved_model": "_saved_model"}[opts.fmt or "keras"]
    out = os.path.join(folder, leaf + ext)
    report = os.path.join(folder, leaf + ".report.json")
    cmd = [opts.python, "-m", "migrator", "convert", *entry.files, "-o", out, "--report", report,
           "--runtime", opts.runtime, "--force"]
    if opts.fmt:
        cmd += ["--format", opts.fmt]
    for a in opts.also:
        cmd += ["--also", a]
    mapping = entry.mapping or opts.mapping
    if mapping:
        cmd += ["--mapping", mapping]
    if entry.framework == "lasagne" and opts.builder_function != "build_model":
        cmd += ["--builder-function", opts.builder_function]
    plugin_args = [a for p in opts.plugins for a in ("--plugin", p)]
    cmd += plugin_args
    if opts.images:
        pre = [opts.python, "-m", "migrator", "compare", *entry.files, "--images", opts.images,
               "--runtime", opts.runtime, "--report", os.path.join(folder, leaf + ".images.report.json"),
               "--force"] + (["--mapping", mapping] if mapping else []) + plugin_args
        run = _run_limited(pre, opts.timeout_s, opts.memory_mb, cancel)
        if run.code != 0 or run.killed:
            o = _classify(entry, run, out, report)
            if o.status == "verification failed":
                o.detail = "on the input set: " + o.detail
            return o
    run = _run_limited(cmd, opts.timeout_s, opts.memory_mb, cancel)
    o = _classify(entry, run, out, report)
    o.mapping = mapping
    return o


# ----------------------------------------------------------------------------------------------
# the index
# ----------------------------------------------------------------------------------------------
def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_index(out_dir: str) -> dict[str, dict]:
    p = os.path.join(out_dir, "index.json")
    try:
        with open(p, encoding="utf-8") as f:
            d = json.load(f)
        return {m["name"]: m for m in d.get("models", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _fmt(v, spec=".3g") -> str:
    return "—" if v is None else format(v, spec)


def _worst(m: dict) -> str:
    if m.get("worst_layer") is None:
        return "—"
    return f"{html.escape(str(m['worst_layer']))} ({_fmt(m.get('worst_max_rel'))})"


def render_index_html(index: dict) -> str:
    rows = []
    colours = {"verified": "#e6f4ea", "verification failed": "#fde7e9", "refused": "#fff4e5",
               "bad file": "#fff4e5", "timed out": "#eeeeee", "out of memory": "#eeeeee", "crashed": "#fde7e9",
               "interrupted": "#eeeeee"}
    for m in index["models"]:
        rep = m.get("report")
        link = ""
        if rep:
            page = os.path.relpath(rep, index["out_dir"]).replace(os.sep, "/").removesuffix(".json") + ".html"
            link = f"<a href='{html.escape(page, quote=True)}'>report</a>"
        outs = "<br>".join(html.escape(os.path.relpath(p, index["out_dir"])) for p in m.get("outputs") or []
                           if ".report." not in os.path.basename(p))
        rows.append(
            f"<tr style='background:{colours.get(m['status'], 'white')}'><td>{html.escape(m['name'])}</td>"
            f"<td>{html.escape(m['framework'])}</td><td><b>{html.escape(m['status'])}</b></td>"
            f"<td>{html.escape(m.get('detail') or '')}</td><td>{outs}</td>"
            f"<td>{_worst(m)}</td>"
            f"<td>{_fmt(m.get('top1_agreement'))}</td><td>{_fmt(m.get('seconds'), '.1f')}</td>"
            f"<td>{_fmt(m.get('peak_rss_mb'), '.0f')}</td><td>{link}</td></tr>")
    counts = ", ".join(f"{n} {s}" for s, n in index["counts"].items() if n)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 6px;font-size:13px;vertical-align:top}th{background:#eee}")
    head = ("<tr><th>model</th><th>framework</th><th>status</th><th>detail</th><th>written</th>"
            "<th>worst layer (max rel)</th><th>top-1 agreement</th><th>seconds</th><th>peak MB</th>"
            "<th>report</th></tr>")
    note = f"<p><b>{html.escape(index['note'])}</b></p>" if index.get("note") else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Migrator batch index</title>"
            f"<style>{style}</style></head><body><h1>Migrator batch: {html.escape(index['root'])}</h1>"
            f"<p>{len(index['models'])} models: {html.escape(counts)}. Runtime {html.escape(index['runtime'])}; "
            f"updated {html.escape(index['updated'])}.</p>{note}<table>{head}{''.join(rows)}</table>"
            "</body></html>\n")


def write_index(out_dir: str, root: str, runtime: str, outcomes: list[dict], note: str = "") -> dict:
    import datetime as dt
    counts = {s: sum(1 for m in outcomes if m["status"] == s) for s in STATUSES}
    index = {"schema_version": INDEX_SCHEMA, "root": os.path.abspath(root), "out_dir": os.path.abspath(out_dir),
             "runtime": runtime, "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "counts": counts, "note": note, "models": outcomes}
    _atomic_write(os.path.join(out_dir, "index.json"), json.dumps(index, indent=1, allow_nan=False))
    _atomic_write(os.path.join(out_dir, "index.html"), render_index_html(index))
    return index


def _still_done(prev: dict | None) -> bool:
    return bool(prev and prev.get("status") == "verified" and prev.get("outputs")
                and all(os.path.exists(p) for p in prev["outputs"]))


def run_batch(root: str, opts: BatchOptions, *, progress: Callable[[int, int, str, float | None], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> dict:
    """Convert every model under ``root``; returns the index dict (also written to ``opts.out_dir``).
    ``progress(done, total, current name, eta seconds or None)``."""
    _STOP.clear()
    user_cancel = cancel

    def cancel() -> bool:
        return _STOP.is_set() or (user_cancel is not None and user_cancel())

    entries = discover(root, builder_function=opts.builder_function)
    if not entries:
        raise MigratorError("no models found (Caffe: .prototxt + .caffemodel; Lasagne: builder .py + "
                            ".pkl/.npz, or a whole pickled network .pkl)", file=root)
    os.makedirs(opts.out_dir, exist_ok=True)
    previous = {} if opts.force else load_index(opts.out_dir)
    results: dict[str, dict] = {}
    order = [e.name for e in entries]
    spent: list[float] = []
    note = ""

    def snapshot() -> list[dict]:
        return [results[n] for n in order if n in results]

    try:
        for i, e in enumerate(entries):
            remaining = len(entries) - i
            eta = (sum(spent) / len(spent)) * remaining if spent else None
            if progress:
                progress(i, len(entries), e.name, eta)
            prev = previous.get(e.name)
            if _still_done(prev):
                results[e.name] = dict(prev, skipped=True)
                continue
            if cancel is not None and cancel():
                note = "interrupted: the models not listed were not converted"
                break
            o = convert_one(e, opts, cancel)
            results[e.name] = o.to_dict()
            spent.append(o.seconds)
            if o.status == "interrupted":
                note = "interrupted: the models not listed were not converted"
                write_index(opts.out_dir, root, opts.runtime, snapshot(), note)
                break
            write_index(opts.out_dir, root, opts.runtime, snapshot())
    except KeyboardInterrupt:
        note = "interrupted: the models not listed were not converted"
        write_index(opts.out_dir, root, opts.runtime, snapshot(), note)
        raise
    if progress:
        progress(len(results), len(entries), "", 0.0)
    return write_index(opts.out_dir, root, opts.runtime, snapshot(), note)


def all_verified(index: dict) -> bool:
    return bool(index["models"]) and all(m["status"] == "verified" for m in index["models"])
