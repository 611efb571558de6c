"""Stand-in for ``lasagne.utils`` (the helpers builder scripts use)."""
import numpy as np
import theano

int_types = (int, np.integer)


def floatX(arr):
    return np.asarray(arr, dtype=theano.config.floatX)


def shared_empty(dim=2, dtype=None):
    return theano.shared(np.zeros((1,) * dim, dtype=dtype or theano.config.floatX))


def as_theano_expression(x):
    return x


def collect_shared_vars(expressions):
    return [e for e in (expressions if isinstance(expressions, (list, tuple)) else [expressions])
            if isinstance(e, theano.SharedVariable)]


def one_hot(x, m=None):
    return theano.Sym("one_hot")


def unique(l):
    out, seen = [], set()
    for x in l:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def as_tuple(x, N, t=None):
    try:
        X = tuple(x)
    except TypeError:
        X = (x,) * N
    if (t is not None) and not all(isinstance(v, t) for v in X):
        raise TypeError(f"expected a single value or an iterable of {t.__name__ if isinstance(t, type) else t}, got {x} "
                        "instead")
    if len(X) != N:
        raise ValueError(f"expected a single value or an iterable with length {N}, "
                         f"got {x} instead")
    return X


def inspect_kwargs(func):
    import inspect
    return [p.name for p in inspect.signature(func).parameters.values()
            if p.default is not p.empty]


def compute_norms(array, norm_axes=None):
    raise RuntimeError("compute_norms is not available while recording")


def create_param(spec, shape, name=None):
    """Lasagne's create_param: spec is a shared variable, an array, or an initializer."""
    shape = tuple(shape)
    if any(d is None or int(d) <= 0 for d in shape):
        raise ValueError("Cannot create param with a non-positive shape dimension. "
                         "Tried to create param with shape=%r, name=%r" % (shape, name))
    if isinstance(spec, theano.SharedVariable):
        if spec.ndim != len(shape):
            raise ValueError("shared variable has %d dimensions, should be %d"
                             % (spec.ndim, len(shape)))
        if spec._shape != shape:
            raise ValueError("shared variable has shape %r, should be %r" % (spec._shape, shape))
        if name is not None and spec.name is None:
            spec.name = name
        return spec
    if isinstance(spec, theano.Sym):
        # an arbitrary Theano expression: Lasagne accepts it (not a parameter)
        return spec
    if isinstance(spec, np.ndarray):
        if spec.shape != shape:
            raise ValueError("array has shape %s, should be %s" % (spec.shape, shape))
        return theano.shared(spec, name=name)
    if callable(spec):
        init_shape = getattr(spec, "_migrator_initializer", False)
        if init_shape:
            return theano.SharedVariable(None, name=name, shape=shape, dtype=theano.config.floatX)
        arr = np.asarray(spec(shape))
        if arr.shape != shape:
            raise RuntimeError("cannot initialize parameters: the provided callable did not "
                               "return a value with the correct shape")
        return theano.shared(arr, name=name)
    raise TypeError("cannot initialize parameters: 'spec' is not a numpy array, a Theano "
                    "expression, or a callable")
