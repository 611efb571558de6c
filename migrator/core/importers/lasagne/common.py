"""Helpers the Lasagne layer converters share (attribute parsing, nonlinearities)."""
from __future__ import annotations


class Unsupported(Exception):
    """The layer cannot be expressed canonically: it becomes a ``Custom`` node with this reason."""


def shape(s) -> tuple | None:
    """A recorded shape (JSON list) as a tuple, None kept for unknown sizes."""
    if s is None:
        return None
    return tuple(None if d is None else int(d) for d in s)


def pair(v, what: str) -> tuple[int, int]:
    """An int or a pair of ints as (int, int); Unsupported otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (int(v), int(v))
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return (int(v[0]), int(v[1]))
    raise Unsupported(f"{what} {v!r} is not a pair of integers")


def fn_name(d) -> str | None:
    """The bare name of a recorded callable (``{"__callable__": ...}``), else None."""
    if not isinstance(d, dict) or "__callable__" not in d:
        return None
    name = str(d["__callable__"]).replace("()", "")
    for sep in (".", " "):
        name = name.rsplit(sep, 1)[-1]
    return name


def activation_of(d) -> dict | None:
    """A Lasagne nonlinearity descriptor -> canonical activation dict (None = linear)."""
    if d is None:
        return None
    cls = d.get("class") if isinstance(d, dict) else None
    if cls == "LeakyRectify":
        a = float(d.get("leakiness", 0.01))
        return {"kind": "relu", "negative_slope": a}
    if cls in ("ScaledTanH", "ScaledTanh"):
        return {"kind": "scaled_tanh", "scale_in": float(d.get("scale_in", 1.0)),
                "scale_out": float(d.get("scale_out", 1.0))}
    name = fn_name(d)
    table = {
        "rectify": {"kind": "relu", "negative_slope": 0.0},
        "relu": {"kind": "relu", "negative_slope": 0.0},
        "leaky_rectify": {"kind": "relu", "negative_slope": 0.01},
        "very_leaky_rectify": {"kind": "relu", "negative_slope": 1.0 / 3.0},
        "elu": {"kind": "elu", "alpha": 1.0},
        "sigmoid": {"kind": "sigmoid"},
        "tanh": {"kind": "tanh"},
        "softmax": {"kind": "softmax", "axis": 1},
        "softplus": {"kind": "softplus"},
        "linear": None,
        "identity": None,
    }
    if name in table:
        return None if table[name] is None else dict(table[name])
    raise Unsupported(f"nonlinearity {name or d!r} has no canonical form")


def kept_axis(axes, ndim: int, what: str) -> int:
    """1 when ``axes`` leave exactly the channel axis; Unsupported otherwise."""
    if axes is None:
        return 1
    axes = [int(a) % ndim for a in (axes if isinstance(axes, list) else [axes])]
    kept = [a for a in range(ndim) if a not in axes]
    if kept != [1]:
        raise Unsupported(f"{what} over axes {axes} (only per-channel, axis 1, is supported)")
    return 1


def ndim(in_shapes, i=0) -> int:
    """Rank of input ``i``; Unsupported when its shape is unknown."""
    s = in_shapes[i] if in_shapes else None
    if s is None:
        raise Unsupported("input shape unknown")
    return len(s)


def conv_pad(pad, kernel) -> tuple[int, int]:
    """Lasagne's ``pad`` (int, pair, 'valid', 'same', 'full') as a symmetric (ph, pw)."""
    if pad in ("valid",):
        return (0, 0)
    if pad == "full":
        return (kernel[0] - 1, kernel[1] - 1)
    if pad == "same":
        return (kernel[0] // 2, kernel[1] // 2)
    if isinstance(pad, list):
        pad = [(0 if p == "valid" else p) for p in pad]
    return pair(pad, "pad")


def one_int(v, what: str) -> int:
    """An int (or a one-element list of one) as int; Unsupported otherwise (1-D layers)."""
    v = v[0] if isinstance(v, list) and len(v) == 1 else v
    if isinstance(v, bool) or not isinstance(v, int):
        raise Unsupported(f"{what} {v!r} is not an integer")
    return int(v)


def triple(v, what: str) -> tuple[int, int, int]:
    """An int or three ints as a triple; Unsupported otherwise (3-D layers)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (int(v),) * 3
    if isinstance(v, list) and len(v) == 3 and all(isinstance(t, int) for t in v):
        return tuple(int(t) for t in v)
    raise Unsupported(f"{what} {v!r} is not an integer or three")


def input_of_rank(in_shapes: list, rank: int, what: str) -> tuple:
    """The first input's shape when it has ``rank`` axes; Unsupported otherwise."""
    x = in_shapes[0] if in_shapes else None
    if x is None or len(x) != rank:
        raise Unsupported(f"{what} on an input of shape {x} (expected "
                          f"{'(N, C, L)' if rank == 3 else '(N, C, D, H, W)'})")
    return x


def pool_mode(mode) -> tuple[str, str | None]:
    """Lasagne's pooling ``mode`` -> (canonical mode, avg_divisor)."""
    if mode == "max":
        return "max", None
    if mode in ("average_inc_pad", "average_exc_pad"):
        return "avg", "inc_pad" if mode == "average_inc_pad" else "exc_pad"
    raise Unsupported(f"pooling mode {mode!r}")
