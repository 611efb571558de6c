# -*- coding: utf-8 -*-
# ruff: noqa: UP004, UP009, UP010, UP031, BLE001  (runs on Python 2.7 too; catches framework errors)
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


def _is_layer(lasagne, obj):
    return isinstance(obj, lasagne.layers.Layer)


def _inputs_of(layer):
    if hasattr(layer, "input_layers"):
        return list(layer.input_layers)
    return [getattr(layer, "input_layer", None)]


def layer_names(lasagne, layers, keys):
    """Migrator's layer naming (the same rules as its importer): the layer's ``name=``; else the
    key under which the builder's returned dict holds it; else ``<Class>_<k>`` counting that
    class's unnamed layers from 1 in get_all_layers order; a name already taken gets _2, _3..."""
    names, taken, counters = {}, set(), {}

    def take(lyr, base):
        nm, i = base, 1
        while nm in taken:
            i += 1
            nm = "%s_%d" % (base, i)
        names[id(lyr)] = nm
        taken.add(nm)

    for lyr in layers:
        if getattr(lyr, "name", None):
            take(lyr, str(lyr.name))
    for lyr in layers:
        if id(lyr) in names:
            continue
        base = keys.get(id(lyr))
        if base is None:
            cls = type(lyr).__name__
            counters[cls] = counters.get(cls, 0) + 1
            base = "%s_%d" % (cls, counters[cls])
        take(lyr, base)
    return names


def pick_output(lasagne, ret, output_key, output_name):
    """-> (output layer, {id(layer): dict key}) following Migrator's importer: one returned layer;
    else the key ``output_key``; else the returned layer Migrator named ``output_name``; else the
    key prob/output/out; else the last returned layer that feeds no other."""
    keys = {}
    if _is_layer(lasagne, ret):
        return ret, keys
    if isinstance(ret, dict):
        items = [(str(k), v) for k, v in ret.items() if _is_layer(lasagne, v)]
    elif isinstance(ret, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(ret) if _is_layer(lasagne, v)]
    else:
        raise BridgeError("load", "the builder function returned %s, not a Lasagne layer or a dict "
                          "of layers" % type(ret).__name__)
    if not items:
        raise BridgeError("load", "the builder function returned no Lasagne layer")
    for k, v in items:
        keys.setdefault(id(v), k)
    bykey = dict(items)
    if output_key:
        if output_key not in bykey:
            raise BridgeError("load", "no layer under the key '%s'" % output_key)
        return bykey[output_key], keys
    if output_name:
        for k, v in items:
            nm = layer_names(lasagne, lasagne.layers.get_all_layers(v), keys)
            if nm.get(id(v)) == output_name:
                return v, keys
    for k in ("prob", "output", "out"):
        if k in bykey:
            return bykey[k], keys
    consumed, seen = set(), set()
    stack = [v for _, v in items]
    while stack:
        lyr = stack.pop()
        if id(lyr) in seen:
            continue
        seen.add(id(lyr))
        for i in _inputs_of(lyr):
            if i is not None:
                consumed.add(id(i))
                stack.append(i)
    sinks = [(k, v) for k, v in items if id(v) not in consumed]
    return (sinks[-1] if sinks else items[-1])[1], keys


def run_builder(path, function):
    import runpy
    d = os.path.dirname(os.path.abspath(path))
    if d not in sys.path:
        sys.path.insert(0, d)
    sys.argv = [path]
    try:
        ns = runpy.run_path(path, run_name="__migrator_builder__")
    except Exception as e:
        raise BridgeError("load", "the builder script failed: %s: %s" % (type(e).__name__, e))
    fn = ns.get(function)
    if fn is None or not callable(fn):
        raise BridgeError("load", "the builder script defines no function '%s'" % function)
    try:
        return fn()
    except Exception as e:
        raise BridgeError("load", "%s() failed: %s: %s" % (function, type(e).__name__, e))


def run_lasagne(req, np, writer):
    theano, lasagne, info = lasagne_info(np)
    emit("info", **info)
    if req.get("mode") == "probe":
        return
    L = req["lasagne"]
    ret = run_builder(L["builder"], L.get("function") or "build_model")
    out, keys = pick_output(lasagne, ret, L.get("output_key"), L.get("output_name"))
    all_layers = lasagne.layers.get_all_layers(out)
    names = layer_names(lasagne, all_layers, keys)
    params = lasagne.layers.get_all_params(out)
    layers = []
    for lay in all_layers:
        try:
            oshape = [None if d is None else int(d) for d in lay.output_shape]
        except Exception:
            oshape = None
        layers.append({"name": names[id(lay)], "type": type(lay).__name__,
                       "module": type(lay).__module__, "shape": oshape,
                       "params": [[str(p.name), [int(d) for d in p.get_value(borrow=True).shape]]
                                  for p in lay.params],
                       "inputs": [names.get(id(i), "?") for i in _inputs_of(lay) if i is not None]})
    emit("layers", layers=layers, n_params=len(params), output=names[id(out)])

    if L.get("params"):
        pz = np.load(os.path.join(req["workdir"], L["params"]))
        values = [pz["p%d" % k] for k in range(len(pz.files))]
        if len(values) != len(params):
            raise BridgeError("params", "Migrator sent %d parameter arrays, the real network has %d"
                              % (len(values), len(params)))
        for k, (p, v) in enumerate(zip(params, values)):
            old = p.get_value(borrow=True)
            if tuple(old.shape) != tuple(v.shape):
                raise BridgeError("params", "parameter #%d (%s): Migrator sent shape %s, the real "
                                  "network has %s" % (k, p.name, tuple(v.shape), tuple(old.shape)))
            p.set_value(np.asarray(v, dtype=old.dtype))

    given = L["inputs"]
    in_layers, args = [], []
    for lay in all_layers:
        nm = names[id(lay)]
        if isinstance(lay, lasagne.layers.InputLayer):
            if nm not in given:
                raise BridgeError("input", "no input array for the input layer '%s'" % nm)
            in_layers.append(lay)
            args.append(np.asarray(np.load(os.path.join(req["workdir"], given[nm])),
                                   dtype=theano.config.floatX))
        elif any(i is None for i in _inputs_of(lay)):
            raise BridgeError("input", "layer '%s' is built on a shape, not on an InputLayer: "
                              "the bridge cannot feed it" % nm, layer=nm)
    wanted = req.get("layers")
    wanted = set(wanted) if wanted is not None else None
    idx = [k for k, lay in enumerate(all_layers)
           if (wanted is None or names[id(lay)] in wanted)
           and not isinstance(lay, lasagne.layers.InputLayer)]
    emit("progress", message="compiling %d outputs with Theano" % len(idx))
    try:
        exprs = lasagne.layers.get_output([all_layers[k] for k in idx], deterministic=True)
        fn = theano.function([lay.input_var for lay in in_layers], exprs, on_unused_input="ignore")
    except Exception as e:
        raise BridgeError("run", "Theano could not compile the network: %s: %s" % (type(e).__name__, e))
    emit("progress", message="running")
    try:
        results = fn(*args)
    except Exception as e:
        raise BridgeError("run", "Theano failed to run the network: %s: %s" % (type(e).__name__, e))
    for k, r in zip(idx, results):
        writer.write(k, names[id(all_layers[k])], [r])


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
