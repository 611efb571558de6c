"""A whole Lasagne network saved as a pickle (``pickle.dump(output_layer, f)``, a dict or list
of layers, or a nolearn ``NeuralNet``), opened without its builder script.

Nothing named by the pickle is imported, and no function the pickle names is run: the
unpickler's ``find_class`` (:class:`NetworkUnpickler`) answers every global from a fixed
table and refuses everything else by name *before* anything is called:

* ``lasagne.layers.*`` classes -> the recorder's re-implementations of those classes
  (``recorder/lasagne/layers``); ``lasagne.nonlinearities.*`` and ``lasagne.init.*`` -> the
  recorder's; the object is created without its ``__init__`` and gets the pickled attributes;
* Theano shared variables (``TensorSharedVariable``, ``ScalarSharedVariable``, the old CUDA
  backend's ``CudaNdarraySharedVariable`` and the new one's ``GpuArraySharedVariable``) -> the
  recorder's shared variable holding the numpy value of the pickled ``Container``; the CUDA
  array unpicklers (``CudaNdarray_unpickler``, ``GpuArray_unpickler``) -> the numpy array they
  were given;
* the other ``theano.*``, ``lasagne.*`` and ``nolearn.*`` names a pickled network drags along
  (the symbolic input variable, its type, compiled training functions of a nolearn net,
  update rules, objectives, handlers, functions such as ``theano.tensor.nnet.conv2d``) ->
  inert records: an :class:`Inert` class whose objects keep the state they are given and do
  nothing; called, it gives another inert record;
* numpy arrays, dtypes and scalars (:func:`numpy_globals`) and a few builtins that only
  build plain data.

Any other global (``os.system``, ``builtins.eval``, a class of the user's ``__main__``, ...)
raises :class:`Refused` with its dotted name.

This module runs in the builder child process (:mod:`.builder_child`, ``--pickle``) with
the recorder's ``lasagne`` and ``theano`` first on ``sys.path``; it imports only the standard
library and numpy (and the recorder lazily), and is also imported by the parent for
:func:`numpy_globals` (the parameter-file unpickler of :mod:`.safe_pickle` uses the same table).
"""
import collections
import pickle

#: shared-variable classes of every Theano backend (module, class name)
SHARED_CLASSES = {
    ("theano.tensor.sharedvar", "TensorSharedVariable"),
    ("theano.tensor.sharedvar", "ScalarSharedVariable"),
    ("theano.scalar.sharedvar", "ScalarSharedVariable"),
    ("theano.compile.sharedvalue", "SharedVariable"),
    ("theano.sandbox.cuda.var", "CudaNdarraySharedVariable"),
    ("theano.gpuarray.type", "GpuArraySharedVariable"),
    ("theano.sandbox.gpuarray.type", "GpuArraySharedVariable"),
}
#: the functions the CUDA array types pickle through: f(numpy array, ...) -> the array
ARRAY_UNPICKLERS = {
    ("theano.sandbox.cuda.type", "CudaNdarray_unpickler"),
    ("theano.gpuarray.type", "GpuArray_unpickler"),
    ("theano.sandbox.gpuarray.type", "GpuArray_unpickler"),
}
#: module prefixes whose other names become inert records
INERT_PREFIXES = ("theano.", "lasagne.", "nolearn.")
#: attributes the recorder's classes need that older Lasagne (0.1) layers do not have, with
#: the value that reproduces 0.1's behaviour
V01_DEFAULTS = {
    "flip_filters": True,          # 0.1's Conv*DLayer always convolves (flips)
    "num_groups": 1,
    "num_leading_axes": 1,
    "only_return_final": False,
    "precompute_input": True,
    "mask_incoming_index": -1,
    "hid_init_incoming_index": -1,
    "cell_init_incoming_index": -1,
}


class Refused(Exception):
    """The pickle names a global that is not on the list."""

    def __init__(self, what):
        Exception.__init__(self, what)
        self.what = what


class Inert:
    """A record of an object the network does not need: keeps its state, runs nothing."""

    _pickled_as = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.__dict__["_args"] = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = dict(state[0] or {}, **state[1])       # (dict, slots)
        if isinstance(state, dict):
            self.__dict__.update({str(k): v for k, v in state.items()})
        else:
            self.__dict__["_state"] = state

    def __call__(self, *args, **kwargs):
        return _inert_class("call", self._pickled_as)()

    # a pickled dict or list subclass (nolearn's Layers) fills itself with SETITEMS / APPENDS
    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", collections.OrderedDict())[key] = value

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        for v in values:
            self.append(v)

    def __repr__(self):
        return f"<pickled {self._pickled_as}>"


_INERT_CLASSES = {}


def _inert_class(module, name):
    key = (module, name)
    cls = _INERT_CLASSES.get(key)
    if cls is None:
        # a class (NEWOBJ needs one) that also names a function the pickle refers to (a
        # nonlinearity, a pool or merge function): describe() reads its dotted _sym_name
        cls = type(str(name), (Inert,), {"__module__": module,
                                         "_pickled_as": f"{module}.{name}",
                                         "_sym_name": f"{module}.{name}"})
        _INERT_CLASSES[key] = cls
    return cls


def _safe_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "iso-8859-1", "utf-8"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return obj.encode(encoding, errors)


def numpy_globals():
    """The globals numpy needs to rebuild arrays, dtypes and scalars (numpy 1 and 2 names)
    plus builtins that only build plain data: {(module, name): object}."""
    import numpy as np
    try:
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nm
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore
        from numpy.core import numeric as nm  # type: ignore
    table = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = ma._reconstruct
        table[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        if hasattr(nm, "_frombuffer"):
            table[(mod, "_frombuffer")] = nm._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    table[("builtins", "set")] = set
    table[("builtins", "frozenset")] = frozenset
    table[("builtins", "complex")] = complex
    table[("builtins", "slice")] = slice
    table[("builtins", "bytearray")] = bytearray
    table[("collections", "OrderedDict")] = collections.OrderedDict
    # Python 3 pickles of bytes at protocol < 3 call _codecs.encode(text, 'latin1')
    table[("_codecs", "encode")] = _safe_encode
    return table


# --------------------------------------------------------------------------------------
# the recorder's classes (imported lazily: only the child has them on sys.path)
# --------------------------------------------------------------------------------------
def _shared_class():
    import theano

    class PickledSharedVariable(theano.SharedVariable):
        """A pickled Theano shared variable: its name and the value its Container held."""

        def __setstate__(self, state):
            import numpy as np
            if not isinstance(state, dict):
                raise pickle.UnpicklingError("a shared variable without its attributes")
            container = state.get("container")
            storage = getattr(container, "__dict__", {}).get("storage")
            value = storage[0] if isinstance(storage, list) and storage else None
            if not isinstance(value, (np.ndarray, np.generic, int, float)):
                raise pickle.UnpicklingError(
                    "shared variable {!r} holds {}, not a numpy array".format(state.get("name"), type(value).__name__))
            name = state.get("name")
            type(self).__init__(self, np.asarray(value),
                                name=name if isinstance(name, str) else None)
    return PickledSharedVariable


def _reconstructor(table):
    """copy_reg._reconstructor(cls, base, state) for protocol 0/1 pickles, on the table's
    classes only."""
    allowed = set()

    def reconstruct(cls, base, state):
        if cls not in allowed or base is not object or state is not None:
            raise Refused("copy_reg._reconstructor({}, {})".format(getattr(cls, "__name__", cls),
                                                                getattr(base, "__name__", base)))
        return object.__new__(cls)
    return reconstruct, allowed


class NetworkUnpickler(pickle.Unpickler):
    """Allow-list unpickler for whole Lasagne networks (see the module docstring)."""

    def __init__(self, f, **kw):
        pickle.Unpickler.__init__(self, f, **kw)
        self._table = numpy_globals()
        self._reconstruct, self._classes = _reconstructor(self._table)
        self._shared = None
        self.seen = collections.Counter()

    def _recorder_class(self, module, name):
        import importlib
        import importlib.util
        import os

        import lasagne.layers as LL
        import lasagne.layers.recurrent as LR
        obj = getattr(LL, name, None)
        if obj is None:
            obj = getattr(LR, name, None)    # Gate
        if obj is None:   # lasagne.layers.dnn / corrmm / cuda_convnet: the recorder's module
            here = os.path.dirname(os.path.abspath(LL.__file__))
            try:
                spec = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and \
                    os.path.dirname(os.path.abspath(spec.origin)) == here:
                obj = getattr(importlib.import_module(module), name, None)
        if isinstance(obj, type) and (issubclass(obj, LL.Layer) or name == "Gate"):
            return obj
        raise Refused(f"{module}.{name} (a Lasagne layer class Migrator does not know)")

    def find_class(self, module, name):
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        key = (module, name)
        self.seen[key] += 1
        if key in self._table:
            return self._table[key]
        if key == ("builtins", "object"):
            return object
        if key == ("copyreg", "_reconstructor"):
            return self._reconstruct
        if key in SHARED_CLASSES:
            if self._shared is None:
                self._shared = _shared_class()
                self._classes.add(self._shared)
            return self._shared
        if key in ARRAY_UNPICKLERS:
            return _array_unpickler
        if (module == "lasagne.layers" or module.startswith("lasagne.layers.")) \
                and name[:1].isupper():
            cls = self._recorder_class(module, name)
            self._classes.add(cls)
            return cls
        if module == "lasagne.nonlinearities" or module == "lasagne.init":
            import lasagne.init as LI
            import lasagne.nonlinearities as LN
            obj = getattr(LN if module.endswith("nonlinearities") else LI, name, None)
            if obj is not None and not name.startswith("_"):
                if isinstance(obj, type):
                    self._classes.add(obj)
                return obj
        if module.startswith(INERT_PREFIXES) and name.isidentifier():
            cls = _inert_class(module, name)
            self._classes.add(cls)
            return cls
        raise Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        raise Refused(f"persistent id {str(pid)[:40]!r}")


def _array_unpickler(npa, *ctx):
    import numpy as np
    if not isinstance(npa, np.ndarray):
        raise pickle.UnpicklingError("a GPU array pickled without its numpy value")
    return npa


# --------------------------------------------------------------------------------------
# what the pickle holds
# --------------------------------------------------------------------------------------
def _is_layer(obj):
    import lasagne.layers as LL
    return isinstance(obj, LL.Layer)


def _all_layers(out):
    import lasagne.layers as LL
    return LL.get_all_layers(out)


def network_of(top):
    """The object the pickle holds -> (what describe() takes: a layer, or a dict/list of
    layers, a few words on what was found, warnings).  Raises ValueError when the pickle
    holds no network."""
    if _is_layer(top):
        return top, "a Lasagne layer", []
    if isinstance(top, dict) and any(_is_layer(v) for v in top.values()):
        return top, "a dict of Lasagne layers", []
    if isinstance(top, (list, tuple)) and top and any(_is_layer(v) for v in top):
        return list(top), "a list of Lasagne layers", []
    state = getattr(top, "__dict__", None) if isinstance(top, Inert) else None
    if state is not None:    # a wrapper such as nolearn's NeuralNet: layers_ holds the layers
        what = getattr(top, "_pickled_as", "an object")
        layers = state.get("layers_")
        if isinstance(layers, Inert):         # nolearn's Layers (an OrderedDict subclass)
            layers = layers.__dict__.get("_items", layers.__dict__.get("_list"))
        if isinstance(layers, dict):
            items = [(str(k), v) for k, v in layers.items() if _is_layer(v)]
            if items:
                return collections.OrderedDict(items), f"{what} (its layers_)", []
        if isinstance(layers, (list, tuple)):
            items = [v for v in layers if _is_layer(v)]
            if items:
                return items, f"{what} (its layers_)", []
        out = state.get("_output_layer") or state.get("output_layer")
        if _is_layer(out):
            return out, f"{what} (its output layer)", []
        raise ValueError(f"the pickle holds {what} without its layers (no layers_ attribute: "
                         "an untrained nolearn net keeps only its layer list)")
    raise ValueError(f"the pickle holds {type(top).__name__}, not a Lasagne network (a layer, a dict or list of "
                     "layers, or a nolearn NeuralNet); a parameter file is opened with its "
                     "builder script (.py)")


def fill_missing_attributes(out):
    """Older Lasagne (0.1) layers lack attributes the recorder's classes read: give them the
    value that reproduces 0.1's behaviour.  -> the Lasagne version the layers look like."""
    looks_01 = False
    for lyr in _all_layers(out):
        d = lyr.__dict__
        cls = type(lyr).__name__
        if "Conv" in cls and "filter_size" in d:
            if "flip_filters" not in d:
                looks_01 = True
            d.setdefault("n", len(d["filter_size"]))
        if cls in ("LSTMLayer", "GRULayer", "RecurrentLayer", "CustomRecurrentLayer") \
                and "mask_incoming_index" not in d:
            looks_01 = True      # 0.1: incomings are [input, mask] when a mask was given
            d["mask_incoming_index"] = 1 if len(d.get("input_layers") or ()) > 1 else -1
        if cls == "DenseLayer" and "num_leading_axes" not in d:
            looks_01 = True
        for k, v in V01_DEFAULTS.items():
            if k not in d and _class_reads(type(lyr), k):
                d[k] = v
    return "0.1" if looks_01 else "0.2.dev1"


def _class_reads(cls, attr):
    """Whether the recorder's class (or a base) names ``attr`` in its code."""
    for c in cls.__mro__:
        for fn in vars(c).values():
            code = getattr(getattr(fn, "fget", fn), "__code__", None)
            if code is not None and attr in code.co_names:
                return True
    return False


def load(path):
    """Unpickle ``path`` (gzip too) with :class:`NetworkUnpickler` -> the top object."""
    import gzip
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f) if head == b"\x1f\x8b" else f
        return NetworkUnpickler(stream, encoding="latin1").load()
