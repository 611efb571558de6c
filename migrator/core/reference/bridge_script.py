# -*- coding: utf-8 -*-
"""Migrator's legacy-environment bridge.

This file is *sent* to the user's old Python environment and run there as
``<command> bridge.py request.json``.  It must stay self-contained and run on Python 2.7 and
3.x with only numpy plus the framework (Caffe, or Theano + Lasagne): no f-strings, no
third-party imports at module level, no imports from Migrator.

Protocol (all files live in one work directory that both sides can read and write):

* ``request.json``: what to do (``mode`` 'probe' or 'run', ``framework``, file paths as seen
  from inside the environment, input ``.npy`` files, the layer names wanted).
* stdout lines starting with ``@@MIGRATOR@@`` carry one JSON event each:
  ``info`` (python / numpy / framework versions), ``layers`` (the real layer list),
  ``output`` (one layer's outputs were written as ``.npy`` files), ``error``, ``done``.
  Anything else on stdout/stderr is the framework's own chatter.
* exit status 0 on success, 3 when the framework cannot be imported, 4 on any other error.
"""
from __future__ import print_function

import json
import os
import sys
import traceback

MARK = "@@MIGRATOR@@ "
EXIT_IMPORT = 3
EXIT_ERROR = 4


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(MARK + json.dumps(fields) + "\n")
    sys.stdout.flush()


class BridgeError(Exception):
    def __init__(self, kind, message, layer=None):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.layer = layer


def as_str(s):
    """Native str (Python 2 boost/caffe wants bytes str, not unicode)."""
    if sys.version_info[0] < 3 and not isinstance(s, str):
        return s.encode("utf-8")
    return s


def base_info():
    return {"python": sys.version.split()[0], "executable": sys.executable,
            "platform": sys.platform}


def import_numpy():
    try:
        import numpy
    except Exception as e:
        raise BridgeError("import", "numpy cannot be imported: %s: %s" % (type(e).__name__, e))
    return numpy


class Writer(object):
    """Writes one layer's outputs as .npy files and announces them."""

    def __init__(self, np, out_dir):
        self.np = np
        self.out_dir = out_dir
        self.count = 0

    def write(self, index, name, arrays):
        files = []
        shapes = []
        for k, a in enumerate(arrays):
            a = self.np.ascontiguousarray(a, dtype=self.np.float32)
            fname = "out_%06d_%d.npy" % (self.count, k)
            self.np.save(os.path.join(self.out_dir, fname), a)
            files.append(fname)
            shapes.append(list(a.shape))
        self.count += 1
        emit("output", index=index, name=name, files=files, shapes=shapes)


# ------------------------------------------------------------------------------------------
# Caffe
# ------------------------------------------------------------------------------------------
def import_caffe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import caffe
    except Exception as e:
        raise BridgeError("import", "caffe cannot be imported: %s: %s" % (type(e).__name__, e))
    return caffe


def caffe_info(np):
    caffe = import_caffe()
    info = base_info()
    info.update({"framework": "caffe", "versions": {
        "python": info["python"], "numpy": np.__version__,
        "caffe": str(getattr(caffe, "__version__", "unknown"))}})
    info["module"] = getattr(caffe, "__file__", None)
    return caffe, info


def run_caffe(req, np, writer):
    caffe, info = caffe_info(np)
    emit("info", **info)
    if req.get("mode") == "probe":
        return
    c = req["caffe"]
    caffe.set_mode_cpu()
    try:
        net = caffe.Net(as_str(c["prototxt"]), as_str(c["caffemodel"]), caffe.TEST)
    except Exception as e:
        raise BridgeError("load", "caffe.Net could not load the model: %s: %s" % (type(e).__name__, e))
    names = [str(n) for n in net._layer_names]
    top_names = net.top_names
    bottom_names = net.bottom_names
    layers = []
    for i, name in enumerate(names):
        layer = net.layers[i]
        layers.append({"name": name, "type": str(layer.type),
                       "tops": [str(t) for t in top_names.get(name, [])],
                       "bottoms": [str(b) for b in bottom_names.get(name, [])],
                       "params": [list(b.data.shape) for b in layer.blobs]})
    emit("layers", layers=layers)

    blobs = net.blobs
    for blob_name, fname in sorted(c["inputs"].items()):
        blob_name = str(blob_name)
        if blob_name not in blobs:
            raise BridgeError("input", "the net has no input blob named '%s' (blobs: %s)"
                              % (blob_name, ", ".join(list(blobs.keys())[:8])))
        x = np.load(os.path.join(req["workdir"], fname))
        blobs[blob_name].reshape(*x.shape)
    net.reshape()
    for blob_name, fname in sorted(c["inputs"].items()):
        x = np.load(os.path.join(req["workdir"], fname))
        blobs[str(blob_name)].data[...] = x

    wanted = req.get("layers")
    wanted = set(wanted) if wanted is not None else None
    # Layer by layer, copying each layer's tops right after it ran: in-place layers (ReLU, BatchNorm,
    # Scale, Dropout writing into their bottom blob) overwrite the blob, so reading blobs after a
    # full forward() would give every layer of an in-place chain the *last* layer's values.
    for i, name in enumerate(names):
        try:
            net._forward(i, i)
        except Exception as e:
            raise BridgeError("run", "forward failed: %s: %s" % (type(e).__name__, e), layer=name)
        if wanted is None or name in wanted:
            outs = [np.array(blobs[t].data, dtype=np.float32, copy=True) for t in top_names.get(name, [])]
            writer.write(i, name, outs)


# ------------------------------------------------------------------------------------------
# Theano + Lasagne
# ------------------------------------------------------------------------------------------
def import_lasagne():
    try:
        import theano
    except Exception as e:
        raise BridgeError("import", "theano cannot be imported: %s: %s" % (type(e).__name__, e))
    try:
        import lasagne
    except Exception as e:
        raise BridgeError("import", "lasagne cannot be imported: %s: %s" % (type(e).__name__, e))
    return theano, lasagne


def lasagne_info(np):
    theano, lasagne = import_lasagne()
    info = base_info()
    info.update({"framework": "lasagne", "versions": {
        "python": info["python"], "numpy": np.__version__,
        "theano": str(getattr(theano, "__version__", "unknown")),
        "lasagne": str(getattr(lasagne, "__version__", "unknown"))}})
    info["module"] = getattr(lasagne, "__file__", None)
    return theano, lasagne, info


def _find_output_layers(ns, lasagne, entry):
    """The output layer(s) the builder script made: ``entry`` (a function name or variable name),
    else the conventional names, else every Layer object defined at top level that nothing uses."""
    Layer = lasagne.layers.Layer
    cand = None
    if entry:
        if entry not in ns:
            raise BridgeError("load", "the builder script defines no '%s'" % entry)
        cand = ns[entry]
        if callable(cand) and not isinstance(cand, Layer):
            cand = cand()
    else:
        for key in ("build_model", "build_network", "build", "create_model", "model"):
            f = ns.get(key)
            if callable(f) and not isinstance(f, Layer) and not isinstance(f, type):
                cand = f()
                break
    if cand is None:
        for key in ("net", "network", "output_layer", "l_out", "output"):
            if key in ns:
                cand = ns[key]
                break
    if cand is None:
        layers = [v for k, v in sorted(ns.items()) if isinstance(v, Layer)]
        if not layers:
            raise BridgeError("load", "the builder script made no Lasagne layer")
        used = set()
        for lay in layers:
            for inc in getattr(lay, "input_layers", None) or [getattr(lay, "input_layer", None)]:
                if inc is not None:
                    used.add(id(inc))
        cand = [lay for lay in layers if id(lay) not in used]
    if isinstance(cand, dict):
        # dict name -> layer (Lasagne Recipes style): the outputs are the layers nothing else reads
        vals = [v for v in cand.values() if isinstance(v, Layer)]
        used = set()
        for lay in vals:
            for inc in getattr(lay, "input_layers", None) or [getattr(lay, "input_layer", None)]:
                if inc is not None:
                    used.add(id(inc))
        cand = [v for v in vals if id(v) not in used]
    if isinstance(cand, (list, tuple)):
        out = [c for c in cand if isinstance(c, Layer)]
    elif isinstance(cand, Layer):
        out = [cand]
    else:
        raise BridgeError("load", "the builder returned %r, not a Lasagne layer" % (type(cand).__name__,))
    if not out:
        raise BridgeError("load", "the builder script made no Lasagne layer")
    return out


def layer_names(lasagne, all_layers):
    """Names as Migrator's recorder gives them: the layer's own name, else '<Class>_<index>'
    with the index of the layer in get_all_layers order; duplicates get a numeric suffix."""
    names = []
    seen = {}
    for i, lay in enumerate(all_layers):
        nm = getattr(lay, "name", None)
        if not nm:
            nm = "%s_%d" % (type(lay).__name__, i)
        nm = str(nm)
        if nm in seen:
            seen[nm] += 1
            nm = "%s_%d" % (nm, seen[nm])
        else:
            seen[nm] = 0
        names.append(nm)
    return names


def run_lasagne(req, np, writer):
    theano, lasagne, info = lasagne_info(np)
    emit("info", **info)
    if req.get("mode") == "probe":
        return
    L = req["lasagne"]
    builder = L["builder"]
    ns = {"__name__": "__migrator_builder__", "__file__": builder}
    bdir = os.path.dirname(os.path.abspath(builder))
    if bdir not in sys.path:
        sys.path.insert(0, bdir)
    try:
        with open(builder) as fh:
            code = compile(fh.read(), builder, "exec")
        exec(code, ns)
        outs = _find_output_layers(ns, lasagne, L.get("entry"))
    except BridgeError:
        raise
    except Exception as e:
        raise BridgeError("load", "the builder script failed: %s: %s" % (type(e).__name__, e))
    all_layers = lasagne.layers.get_all_layers(outs)
    names = layer_names(lasagne, all_layers)
    params = lasagne.layers.get_all_params(outs)
    layers = []
    for nm, lay in zip(names, all_layers):
        try:
            oshape = [None if d is None else int(d) for d in lay.output_shape]
        except Exception:
            oshape = None
        layers.append({"name": nm, "type": type(lay).__name__,
                       "module": type(lay).__module__,
                       "shape": oshape,
                       "params": [[str(p.name), list(p.get_value().shape)] for p in lay.get_params()],
                       "inputs": [names[all_layers.index(inc)] for inc in
                                  (getattr(lay, "input_layers", None) or [getattr(lay, "input_layer", None)])
                                  if inc is not None and inc in all_layers]})
    emit("layers", layers=layers, n_params=len(params))

    if L.get("params"):
        pz = np.load(os.path.join(req["workdir"], L["params"]))
        values = [pz["p%d" % k] for k in range(len(pz.files))]
        if len(values) != len(params):
            raise BridgeError("params", "Migrator sent %d parameter arrays, the real network has %d"
                              % (len(values), len(params)))
        for k, (p, v) in enumerate(zip(params, values)):
            old = p.get_value()
            if tuple(old.shape) != tuple(v.shape):
                raise BridgeError("params", "parameter #%d (%s): Migrator sent shape %s, the real network "
                                  "has %s" % (k, p.name, tuple(v.shape), tuple(old.shape)))
            p.set_value(v.astype(old.dtype))

    inputs = [lay for lay in all_layers if isinstance(lay, lasagne.layers.InputLayer)]
    given = L["inputs"]
    feed = {}
    in_vars = []
    for lay, nm in zip(all_layers, names):
        if lay in inputs:
            if nm not in given:
                raise BridgeError("input", "no input array for input layer '%s'" % nm)
            in_vars.append(lay.input_var)
            feed[lay] = np.load(os.path.join(req["workdir"], given[nm]))
    wanted = req.get("layers")
    wanted = set(wanted) if wanted is not None else None
    idx = [k for k, nm in enumerate(names) if wanted is None or nm in wanted]
    exprs = lasagne.layers.get_output([all_layers[k] for k in idx], deterministic=True)
    try:
        fn = theano.function(in_vars, exprs, on_unused_input="ignore")
    except Exception as e:
        raise BridgeError("run", "theano could not compile the network: %s: %s" % (type(e).__name__, e))
    args = [feed[lay] for lay in inputs]
    args = [np.asarray(a, dtype=theano.config.floatX) for a in args]
    emit("progress", message="running")
    try:
        results = fn(*args)
    except Exception as e:
        raise BridgeError("run", "theano failed to run the network: %s: %s" % (type(e).__name__, e))
    for k, r in zip(idx, results):
        writer.write(k, names[k], [r])


# ------------------------------------------------------------------------------------------
def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: bridge.py request.json\n")
        return 2
    try:
        with open(argv[1]) as fh:
            req = json.load(fh)
        np = import_numpy()
        fw = req.get("framework")
        out_dir = req.get("out_dir") or req["workdir"]
        writer = Writer(np, out_dir)
        if fw == "caffe":
            run_caffe(req, np, writer)
        elif fw == "lasagne":
            run_lasagne(req, np, writer)
        elif fw == "python":   # probe of the interpreter only
            info = base_info()
            info.update({"framework": None, "versions": {"python": info["python"], "numpy": np.__version__}})
            emit("info", **info)
        else:
            raise BridgeError("request", "unknown framework %r" % (fw,))
    except BridgeError as e:
        emit("error", kind=e.kind, message=e.message, layer=e.layer,
             traceback=traceback.format_exc()[-4000:])
        return EXIT_IMPORT if e.kind == "import" else EXIT_ERROR
    except Exception as e:
        emit("error", kind="internal", message="%s: %s" % (type(e).__name__, e), layer=None,
             traceback=traceback.format_exc()[-4000:])
        return EXIT_ERROR
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
