"""Stand-in for Theano: enough for builder scripts to import and define classes.

Any ``theano.*`` sub-module can be imported; any attribute exists.  Symbolic values are
:class:`Sym` objects that accept every operation and compute nothing (the recorder never
executes ``get_output_for``).  ``theano.shared`` returns a :class:`SharedVariable` that
knows its shape, which is what Lasagne parameters need.
"""
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "1.0.5+migrator-recorder"
MIGRATOR_RECORDER = True


class Sym:
    """A symbolic placeholder: every operation gives another placeholder."""

    def __init__(self, *args, **kwargs):
        name = kwargs.get("name")
        if name is None and args and isinstance(args[0], str):
            name = args[0]
        object.__setattr__(self, "_sym_name", name or type(self).__name__)

    def __repr__(self):
        return "<theano stand-in %s>" % self._sym_name

    @property
    def __name__(self):
        return self._sym_name.rsplit(".", 1)[-1]

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Sym("%s.%s" % (self._sym_name, name))

    def __call__(self, *args, **kwargs):
        return Sym(self._sym_name + "()")

    def __getitem__(self, item):
        return Sym(self._sym_name + "[]")

    def __iter__(self):
        raise TypeError("a symbolic Theano value cannot be iterated while recording")

    def __bool__(self):
        return True

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


def _binop(name):
    def op(self, *args):
        return Sym("(%s %s)" % (self._sym_name, name))
    return op


for _n in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
           "rfloordiv", "mod", "rmod", "pow", "rpow", "neg", "pos", "abs", "lt", "le", "gt",
           "ge", "and", "rand", "or", "ror", "xor", "rxor", "invert", "matmul", "rmatmul",
           "iadd", "isub", "imul", "itruediv"):
    setattr(Sym, "__%s__" % _n, _binop(_n))


def _make_class(qualname):
    short = qualname.rsplit(".", 1)[-1]
    return type(short, (Sym,), {"__module__": qualname.rsplit(".", 1)[0],
                                "_sym_qualname": qualname})


class PermissiveModule(types.ModuleType):
    """A module where every public attribute exists (capitalised names are classes)."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        qual = "%s.%s" % (self.__name__, name)
        sub = sys.modules.get(qual)
        if sub is not None:
            return sub
        val = _make_class(qual) if name[:1].isupper() else Sym(qual)
        setattr(self, name, val)
        return val


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes every ``theano.<anything>`` importable as a :class:`PermissiveModule`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("theano."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = PermissiveModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        parent, _, child = module.__name__.rpartition(".")
        setattr(sys.modules[parent], child, module)
        _populate(module)


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())


# ---- the pieces with real behaviour --------------------------------------------------
class _Config:
    floatX = "float32"
    device = "cpu"
    mode = "FAST_RUN"

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Sym("theano.config." + name)


config = _Config()


class SharedVariable(Sym):
    """What ``theano.shared`` returns: a named value with a shape.

    ``get_value()`` returns the value given to ``shared`` / ``set_value``; for Lasagne
    parameters created from an initializer it is a zero-cost zero array of the right
    shape (the recorder only needs shapes).
    """

    def __init__(self, value=None, name=None, shape=None, dtype=None, broadcastable=None,
                 **kwargs):
        import numpy as np
        Sym.__init__(self, name=name or "shared")
        object.__setattr__(self, "name", name)
        if value is not None:
            value = np.asarray(value)
            shape = value.shape
            dtype = value.dtype
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_shape", tuple(int(s) for s in (shape or ())))
        object.__setattr__(self, "dtype", str(dtype or config.floatX))
        object.__setattr__(self, "broadcastable",
                           tuple(broadcastable) if broadcastable is not None
                           else (False,) * len(self._shape))
        object.__setattr__(self, "tag", types.SimpleNamespace())

    def __setattr__(self, key, value):
        object.__setattr__(self, key, value)

    @property
    def shape(self):
        return Sym("%s.shape" % self._sym_name)

    @property
    def ndim(self):
        return len(self._shape)

    def get_value(self, borrow=False, return_internal_type=False):
        import numpy as np
        if self._value is not None:
            return self._value if borrow else self._value.copy()
        z = np.broadcast_to(np.zeros((), dtype=self.dtype), self._shape)
        return z if borrow else np.zeros(self._shape, dtype=self.dtype)

    def set_value(self, value, borrow=False):
        import numpy as np
        value = np.asarray(value)
        if value.shape != self._shape:
            raise ValueError("shared variable %s: cannot set a value of shape %s, expected %s"
                             % (self.name, value.shape, self._shape))
        object.__setattr__(self, "_value", value)

    def __repr__(self):
        return "<theano stand-in shared %s %s>" % (self.name, self._shape)


def shared(value, name=None, strict=False, allow_downcast=None, **kwargs):
    return SharedVariable(value, name=name, broadcastable=kwargs.get("broadcastable"))


def function(*args, **kwargs):
    def _not_available(*a, **k):
        raise RuntimeError("theano.function cannot run while Migrator records the network "
                           "(Theano is replaced by a stand-in)")
    return _not_available


def _populate(module):
    """Fill sub-modules with what scripts commonly need as real objects."""
    name = module.__name__
    if name == "theano.tensor":
        module.shared = shared
        for t in ("scalar", "vector", "matrix", "tensor3", "tensor4", "tensor5", "fmatrix",
                  "ftensor4", "imatrix", "ivector", "lvector", "fvector", "dmatrix", "dtensor4",
                  "iscalar", "fscalar"):
            setattr(module, t, Sym("theano.tensor." + t))
    if name == "theano.tensor.signal.pool":
        pass


import theano.tensor
import theano.tensor.nnet
import theano.tensor.signal
import theano.tensor.signal.pool

tensor = sys.modules["theano.tensor"]
Op = _make_class("theano.Op")
Apply = _make_class("theano.Apply")
Variable = _make_class("theano.Variable")
