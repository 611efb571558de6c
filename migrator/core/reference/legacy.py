"""The real framework, in the user's old environment, as the reference runtime.

The user gives the command that starts a Python in their legacy environment -- an interpreter
path (``/opt/caffe/bin/python``), or any command: ``conda run -n old python``,
``chroot /srv/old python3``, ``docker exec -i box python`` (with a ``path_map``).  Migrator copies
:mod:`bridge_script` into a fresh work directory that the environment can read, writes the request
(model files, input arrays as ``.npy``, Lasagne parameters as ``.npz``) next to it and runs::

    <command> <workdir>/bridge.py <workdir>/request.json

The bridge reports what it found (python / numpy / framework versions, the real layer list) and then
each layer's outputs, as ``.npy`` files announced on stdout, which this side loads, deletes and yields
while the bridge is still running.  No network is involved.

Paths: the work directory must be visible inside the environment.  ``chroot DIR ...`` commands are
detected and the work directory is made inside ``DIR/tmp`` (seen as ``/tmp/migrator-XXXX`` inside);
``root=DIR`` does the same explicitly; ``path_map=(host_dir, env_dir)`` (or ``"host:env"``) makes it
under ``host_dir`` and tells the environment ``env_dir/...`` (containers with a bind mount).  Model
files outside the visible area are linked or copied into the work directory.

Every failure becomes a :class:`MigratorError` carrying the environment's own error text: command not
found, framework not importable, model not loadable, crash (signal / non-zero exit), timeout, output
count mismatch.  Cancelling (the ``cancel`` callable returns True, or the generator is closed) kills the
bridge's whole process group.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, MigratorError
from .opencv_rt import caffe_files
from .runtime_base import Runtime, check_cancel, input_dict

MARK = "@@MIGRATOR@@ "
DEFAULT_TIMEOUT = 600.0
PROBE_TIMEOUT = 120.0
BRIDGE_FILE = Path(__file__).with_name("bridge_script.py")
# variables of *this* process that would confuse another Python
_DROP_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE",
             "__PYVENV_LAUNCHER__", "CONDA_PREFIX", "CONDA_DEFAULT_ENV")


def split_command(command: str | Sequence[str] | None) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError as e:
            raise MigratorError(f"cannot parse the legacy environment command {command!r}: {e}") from None
    return [str(c) for c in command]


def chroot_dir(argv: Sequence[str]) -> str | None:
    """The new root of a ``[sudo] chroot [OPTIONS] DIR python...`` command, else None."""
    for i, a in enumerate(argv):
        if os.path.basename(a) == "chroot":
            j = i + 1
            while j < len(argv) and argv[j].startswith("-"):
                # options taking a separate value: --userspec U, --groups G
                if argv[j] in ("--userspec", "--groups") and "=" not in argv[j]:
                    j += 1
                j += 1
            return argv[j] if j < len(argv) else None
        if i > 2:   # chroot comes first, maybe after sudo / env / nice
            break
    return None


def _signal_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    if rc > 128:
        try:
            return f"exited with status {rc} (= 128 + {signal.Signals(rc - 128).name}: a crash)"
        except ValueError:
            pass
    return f"exited with status {rc}"


class _PathMap:
    """Host paths <-> paths inside the environment."""

    def __init__(self, host: str | None, env: str | None):
        self.host = os.path.realpath(host) if host else None
        self.env = env.rstrip("/") or "/" if env else None

    @property
    def identity(self) -> bool:
        return self.host is None

    def to_env(self, host_path: str) -> str | None:
        """The environment's path of ``host_path``, or None when it is not visible there."""
        if self.identity:
            return os.path.abspath(host_path)
        real = os.path.realpath(host_path)
        if real == self.host or real.startswith(self.host.rstrip("/") + "/"):
            rel = os.path.relpath(real, self.host)
            return self.env if rel == "." else (self.env.rstrip("/") + "/" + rel.replace(os.sep, "/"))
        return None


class LegacyRuntime(Runtime):
    name = "legacy"
    label = "Legacy environment (real framework)"

    def __init__(self, command: str | Sequence[str] | None = None, *, timeout: float | None = None,
                 root: str | None = None, path_map: Any = None, env: dict | None = None,
                 entry: str | None = None, keep_workdir: bool = False, **settings: Any):
        super().__init__(command=command, timeout=timeout, root=root, path_map=path_map, env=env,
                         entry=entry, **settings)
        self.argv = split_command(command)
        self.timeout = float(timeout) if timeout else DEFAULT_TIMEOUT
        self.env_extra = {str(k): str(v) for k, v in (env or {}).items()}
        self.entry = entry
        self.keep_workdir = keep_workdir
        if path_map and root:
            raise MigratorError("legacy environment: give either root or path_map, not both")
        if not path_map:
            root = root or chroot_dir(self.argv)
        if isinstance(path_map, str):
            if ":" not in path_map:
                raise MigratorError(f"legacy path_map {path_map!r}: expected 'HOST_DIR:ENV_DIR'")
            path_map = tuple(path_map.split(":", 1))
        if root:
            self.paths = _PathMap(root, "/")
            self._work_base = os.path.join(root, "tmp")
        elif path_map:
            host, envp = path_map
            self.paths = _PathMap(host, envp)
            self._work_base = host
        else:
            self.paths = _PathMap(None, None)
            self._work_base = None
        self.root = root
        #: what the bridge reported: python, executable, framework, versions
        self.info: dict | None = None
        #: the real layer list reported by the bridge in the last run
        self.layers: list[dict] | None = None
        self.last_workdir: str | None = None

    # ------------------------------------------------------------------------------------
    @property
    def command_text(self) -> str:
        return shlex.join(self.argv) if self.argv else ""

    def describe(self) -> dict:
        d = {"name": self.name, "framework": None, "versions": {}, "command": self.command_text}
        if self.info:
            d["framework"] = self.info.get("framework")
            d["versions"] = dict(self.info.get("versions") or {})
            d["python"] = self.info.get("executable")
        return d

    def check(self, graph) -> str | None:
        if not self.argv:
            return ("no legacy environment configured: give the command that starts its Python "
                    "(--legacy-python CMD, or the GUI's reference-runtime settings)")
        exe = self.argv[0]
        if os.sep in exe:
            if not os.path.exists(exe):
                return f"command not found: {exe}"
        elif shutil.which(exe) is None:
            return f"command not found: {exe}"
        if self.root and not os.path.isdir(self.root):
            return f"the environment root {self.root} does not exist"
        if self._work_base and not os.path.isdir(self._work_base):
            return f"the work directory base {self._work_base} does not exist"
        if graph is None:
            return None
        fw = getattr(graph, "framework", None)
        if fw not in ("caffe", "lasagne"):
            return f"the legacy bridge runs Caffe or Lasagne models, not {fw}"
        for f in self._model_files(graph):
            if not os.path.isfile(f):
                return f"model file not found: {f}"
        return None

    # ------------------------------------------------------------------------------------
    def _model_files(self, graph) -> list[str]:
        if graph.framework == "caffe":
            proto, weights = caffe_files(graph)
            return [f for f in (proto, weights) if f]
        builder = self._builder(graph)
        return [builder] if builder else []

    @staticmethod
    def _builder(graph) -> str | None:
        meta = getattr(graph, "meta", {}) or {}
        b = meta.get("builder") or meta.get("builder_script")
        if b:
            return str(b)
        for f in graph.files or []:
            if str(f).endswith(".py"):
                return str(f)
        return None

    def _make_workdir(self) -> tuple[str, str]:
        base = self._work_base
        if base:
            os.makedirs(base, exist_ok=True)
        wd = tempfile.mkdtemp(prefix="migrator-", dir=base)
        os.chmod(wd, 0o755)
        env_wd = self.paths.to_env(wd)
        if env_wd is None:   # cannot happen: wd is under the mapped base
            raise MigratorError(f"legacy environment: work directory {wd} is not visible inside it")
        return wd, env_wd

    def _visible(self, host_file: str, wd: str, env_wd: str) -> str:
        """Environment path of a model file; links/copies it into the work directory if needed."""
        p = self.paths.to_env(host_file)
        if p is not None:
            return p
        sub = os.path.join(wd, "files")
        os.makedirs(sub, exist_ok=True)
        dst = os.path.join(sub, os.path.basename(host_file))
        try:
            os.link(os.path.realpath(host_file), dst)
        except OSError:
            shutil.copy2(host_file, dst)
        return env_wd + "/files/" + os.path.basename(host_file)

    def _proc_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
        env.update({"GLOG_minloglevel": "2", "MPLBACKEND": "Agg", "PYTHONIOENCODING": "utf-8",
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"})
        if self.root:
            # HOME etc. of this machine mean nothing in the chroot
            env.update({"HOME": "/tmp", "MPLCONFIGDIR": "/tmp", "THEANO_FLAGS": env.get("THEANO_FLAGS", "")})
            env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env.update(self.env_extra)
        return env

    def _error(self, msg: str, *, graph=None, layer: str | None = None, tail: Sequence[str] = ()) -> MigratorError:
        text = f"legacy environment `{self.command_text}`: {msg}"
        tail = [ln.strip() for ln in tail if ln.strip()]
        if tail:
            last = " | ".join(tail[-3:])
            if len(last) > 600:
                last = "..." + last[-600:]
            text += f" -- its output: {last}"
        file = None
        if graph is not None and graph.files:
            file = str(graph.files[0])
        return MigratorError(text, file=file, layer=layer)

    # ------------------------------------------------------------------------------------
    def probe(self, framework: str | None = None, graph=None) -> dict:
        """Start the environment once and return what the bridge found (python, framework, versions).

        ``framework`` 'caffe' | 'lasagne' | None (interpreter and numpy only).
        """
        fw = framework or (graph.framework if graph is not None else None) or "python"
        req = {"mode": "probe", "framework": fw}
        for _ in self._session(req, graph=graph, timeout=min(self.timeout, PROBE_TIMEOUT)):
            pass
        return dict(self.info or {})

    def run(self, graph, x_nchw, *, progress=None, cancel=None):
        self.ensure_usable(graph)
        xs = input_dict(graph, x_nchw)
        wd, env_wd = self._make_workdir()
        self.last_workdir = wd
        try:
            req: dict[str, Any] = {"mode": "run", "framework": graph.framework}
            wanted = [n.name for n in graph.nodes if n.op != "Input"]
            req["layers"] = wanted
            if graph.framework == "caffe":
                proto, weights = caffe_files(graph)
                inputs = {}
                for node in graph.nodes:
                    if node.op == "Input":
                        blob = node.provenance.tops[0] if node.provenance.tops else node.name
                        fname = f"in_{len(inputs)}.npy"
                        np.save(os.path.join(wd, fname), xs[node.name])
                        inputs[blob] = fname
                req["caffe"] = {"prototxt": self._visible(proto, wd, env_wd),
                                "caffemodel": self._visible(weights, wd, env_wd), "inputs": inputs}
            else:
                builder = self._builder(graph)
                if builder is None:
                    pkl = (graph.meta or {}).get("network_pickle")
                    raise MigratorError(
                        "the real Theano/Lasagne runtime rebuilds the network with its builder "
                        "script, and this model has none" + (
                            " (a whole pickled network: running it in the real Lasagne would run "
                            "the pickle's code; compare with --runtime builtin)" if pkl else ""),
                        file=pkl or (graph.files[0] if graph.files else None))
                inputs = {}
                for node in graph.nodes:
                    if node.op == "Input":
                        fname = f"in_{len(inputs)}.npy"
                        np.save(os.path.join(wd, fname), xs[node.name])
                        inputs[node.name] = fname
                params = lasagne_param_list(graph)
                np.savez(os.path.join(wd, "params.npz"), **{f"p{i}": v for i, v in enumerate(params)})
                meta = graph.meta or {}
                req["lasagne"] = {"builder": self._visible(builder, wd, env_wd), "params": "params.npz",
                                  "inputs": inputs,
                                  "function": self.entry or meta.get("builder_function") or "build_model",
                                  "output_key": self.settings.get("output_key"),
                                  "output_name": meta.get("output_layer")}
            yield from self._session(req, graph=graph, wd=wd, env_wd=env_wd, xs=xs,
                                     progress=progress, cancel=cancel)
        finally:
            if not self.keep_workdir:
                shutil.rmtree(wd, ignore_errors=True)

    # ------------------------------------------------------------------------------------
    def _session(self, req: dict, *, graph=None, wd: str | None = None, env_wd: str | None = None,
                 xs: dict | None = None, progress=None, cancel=None, timeout: float | None = None):
        """Run the bridge once; yield (node name, outputs) in graph order (run mode)."""
        own_wd = wd is None
        if own_wd:
            wd, env_wd = self._make_workdir()
        proc = None
        try:
            shutil.copyfile(BRIDGE_FILE, os.path.join(wd, "bridge.py"))
            req = dict(req, workdir=env_wd, out_dir=env_wd)
            with open(os.path.join(wd, "request.json"), "w") as fh:
                json.dump(req, fh)
            argv = self.argv + [env_wd + "/bridge.py", env_wd + "/request.json"]
            check_cancel(cancel)
            if progress:
                progress(0.0, f"starting the legacy environment: {self.command_text}")
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, cwd=wd, env=self._proc_env(),
                                        start_new_session=True)
            except FileNotFoundError:
                raise self._error(f"command not found: {self.argv[0]}", graph=graph) from None
            except PermissionError as e:
                raise self._error(f"cannot start {self.argv[0]}: {e.strerror}", graph=graph) from None
            except OSError as e:
                raise self._error(f"cannot start {self.argv[0]}: {e}", graph=graph) from None
            yield from self._talk(proc, req, graph, wd, xs, progress, cancel,
                                  timeout if timeout is not None else self.timeout)
        finally:
            if proc is not None and proc.poll() is None:
                _kill_group(proc)
            if own_wd and not self.keep_workdir:
                shutil.rmtree(wd, ignore_errors=True)

    def _talk(self, proc, req, graph, wd, xs, progress, cancel, timeout):
        events: queue.Queue = queue.Queue()
        stdout_tail: collections.deque = collections.deque(maxlen=60)
        stderr_tail: collections.deque = collections.deque(maxlen=60)

        def read_stdout():
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith(MARK):
                    try:
                        events.put(json.loads(line[len(MARK):]))
                        continue
                    except ValueError:
                        pass
                stdout_tail.append(line)
            events.put(None)

        def read_stderr():
            for raw in iter(proc.stderr.readline, b""):
                stderr_tail.append(raw.decode("utf-8", "replace").rstrip("\n"))

        threads = [threading.Thread(target=read_stdout, daemon=True),
                   threading.Thread(target=read_stderr, daemon=True)]
        for t in threads:
            t.start()

        def tail():
            return list(stderr_tail) + list(stdout_tail)

        run_mode = req.get("mode") == "run"
        nodes = list(graph.nodes) if (graph is not None and run_mode) else []
        order: list[str] = []            # node names to yield, in graph order
        pending: dict[str, list[np.ndarray]] = {}
        pos = 0
        n_total = 1
        n_got = 0
        deadline = time.monotonic() + timeout
        error_event = None
        done = False
        self.info = None
        self.layers = None

        def kill():
            _kill_group(proc)

        while True:
            if cancel is not None and cancel():
                kill()
                raise Cancelled("cancelled")
            if time.monotonic() > deadline:
                kill()
                raise self._error(f"no answer within {timeout:.0f} s (timeout; raise it in the settings "
                                  "if the model is big)", graph=graph, tail=tail())
            try:
                ev = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if ev is None:
                break
            kind = ev.get("event")
            if kind == "info":
                self.info = {k: v for k, v in ev.items() if k != "event"}
            elif kind == "error":
                error_event = ev
            elif kind == "done":
                done = True
            elif kind == "progress" and progress:
                progress(min(0.99, n_got / n_total), f"legacy environment: {ev.get('message', '')}")
            elif kind == "layers" and run_mode:
                self.layers = ev.get("layers") or []
                real = {ly["name"]: ly for ly in self.layers}
                self._check_layer_list(graph, real)
                order = [n.name for n in nodes if n.op == "Input" or n.name in real]
                n_total = max(1, len(order))
                # Input nodes: the arrays exactly as fed
                for n in nodes:
                    if n.op == "Input":
                        pending[n.name] = [xs[n.name]]
            elif kind == "output" and run_mode:
                name = ev["name"]
                arrs = []
                for f in ev.get("files", []):
                    p = os.path.join(wd, f)
                    arrs.append(np.load(p))
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
                try:
                    node = graph.node(name)
                except KeyError:
                    continue
                if node.op == "Input":
                    continue
                if len(arrs) != node.num_outputs:
                    kill()
                    raise self._error(f"the real {graph.framework} layer gives {len(arrs)} output(s), "
                                      f"Migrator's graph has {node.num_outputs}", graph=graph, layer=name)
                pending[name] = arrs
                n_got += 1
            # hand out what is ready, in graph order; time spent by the consumer does not count
            while pos < len(order) and order[pos] in pending:
                nm = order[pos]
                pos += 1
                if progress:
                    progress(min(0.99, pos / n_total), f"legacy {graph.framework}: {nm}")
                t_out = time.monotonic()
                yield nm, pending.pop(nm)
                deadline += time.monotonic() - t_out

        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill()
            rc = proc.wait()
        for t in threads:
            t.join(timeout=2)
        if error_event is not None:
            msg = error_event.get("message") or "error"
            if error_event.get("kind") == "import":
                msg = f"the framework is not importable there: {msg}"
            raise self._error(msg, graph=graph, layer=error_event.get("layer"), tail=list(stderr_tail)[-3:])
        if rc != 0:
            what = _signal_text(rc)
            if rc == 127 and not self.info:
                what += " (command not found inside the environment?)"
            raise self._error(f"the bridge {what}", graph=graph, tail=tail())
        if self.info is None:
            raise self._error("the bridge reported nothing (is this a Python interpreter?)",
                              graph=graph, tail=tail())
        if not done:
            raise self._error("the bridge stopped without finishing", graph=graph, tail=tail())
        if run_mode:
            missing = [nm for nm in order[pos:]]
            if missing:
                raise self._error(f"no output came back for {len(missing)} layer(s)", graph=graph,
                                  layer=missing[0])

    def _check_layer_list(self, graph, real: dict[str, dict]) -> None:
        """Warn where the real network differs from Migrator's graph (names, types, shapes, params)."""
        ours = [n for n in graph.nodes if n.op != "Input"]
        missing = [n.name for n in ours if n.name not in real]
        if missing:
            self.warnings.append(f"the real {graph.framework} network has no layer named "
                                 + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                                 + " (not observed)")
        known = {n.name for n in graph.nodes}
        extra = [nm for nm, ly in real.items() if nm not in known
                 and not (graph.framework == "caffe" and ly.get("type") in ("Split", "Input"))]
        if extra:
            self.warnings.append(f"the real {graph.framework} network has layers Migrator did not read: "
                                 + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
        for n in ours:
            ly = real.get(n.name)
            if ly is None:
                continue
            st = n.provenance.type
            if st and ly.get("type") and _norm_type(st) != _norm_type(ly["type"]):
                self.warnings.append(f"layer '{n.name}': Migrator read type {st}, the real network has "
                                     f"{ly['type']}")
            rshape = ly.get("shape")
            if rshape is not None and n.out_shape is not None:
                a = [d for d in n.out_shape[1:]]
                b = [d for d in rshape[1:]]
                if a != b:
                    self.warnings.append(f"layer '{n.name}': Migrator's output shape {tuple(n.out_shape)}, "
                                         f"the real network's {tuple(rshape)}")
            rparams = ly.get("params")
            if rparams is not None:
                # Caffe: [shape, ...]; Lasagne: [[name, shape], ...].  Element counts are compared
                # (Caffe's legacy 4-D blobs and Migrator's canonical layouts differ in shape only).
                rp = [int(np.prod(p[1] if len(p) == 2 and isinstance(p[1], list) else p)) for p in rparams]
                op = [int(p.value.size) for p in n.params.values()]
                if rp != op:
                    self.warnings.append(f"layer '{n.name}': Migrator's parameter shapes {op}, the real "
                                         f"network's {rp}")


def _norm_type(t: str) -> str:
    return str(t).replace("_", "").lower()


def lasagne_param_list(graph) -> list[np.ndarray]:
    """The graph's parameters in Lasagne ``get_all_params`` order.

    Uses the values as the parameter file held them (``graph.meta['lasagne_param_values']``, kept by
    the importer), else ``graph.meta['param_order']`` (list of (node name, param key)), else node
    order with each node's params in insertion (add_param) order.
    """
    meta = getattr(graph, "meta", {}) or {}
    if meta.get("lasagne_param_values") is not None:
        return [np.asarray(v) for v in meta["lasagne_param_values"]]
    order = meta.get("param_order")
    out = []
    if order:
        for node_name, pname in order:
            out.append(np.asarray(graph.node(node_name).params[pname].value))
        return out
    for n in graph.nodes:
        for p in n.params.values():
            out.append(np.asarray(p.value))
    return out


def _kill_group(proc) -> None:
    """Kill the bridge and everything it started (chroot / conda run children) -- our own session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
