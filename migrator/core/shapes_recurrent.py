"""Shape functions of the recurrent ops (``Recurrent``, ``Embedding``); registered in
:data:`migrator.core.shapes.SHAPE_FUNCS` when :mod:`migrator.core.shapes` is imported."""
from __future__ import annotations

from .shapes import shape_rule


@shape_rule("Embedding")
def _embedding(node, ins, ctx):
    return [tuple(ins[0]) + (int(node.attrs["output_size"]),)]


@shape_rule("Recurrent")
def _recurrent(node, ins, ctx):
    x = ins[0]
    if len(x) < 3:
        raise ctx.error(f"recurrent input {tuple(x)} is not (batch, time, features...)")
    units = int(node.attrs["units"])
    if node.attrs.get("only_return_final"):
        return [(x[0], units)]
    return [(x[0], x[1], units)]


def index_inputs(graph) -> dict[str, int]:
    """Network inputs that only feed embedding lookups (Lasagne ``Embedding``, Caffe
    ``Embed``): input name -> vocabulary size.  Random test inputs for them must be
    integers in ``[0, size)`` (a Gaussian sample gives negative indices, which Lasagne/numpy
    wrap around and Keras refuses)."""
    out: dict[str, int] = {}
    for n in graph.input_nodes:
        users = graph.consumers(n.name)
        sizes = []
        for u in users:
            if u.op == "Embedding" and u.inputs[:1] == [n.name]:
                sizes.append(int(u.attrs["input_size"]))
            elif u.op == "Embed" and u.inputs[:1] == [n.name]:
                sizes.append(int(u.attrs["input_dim"]))
            else:
                sizes = []
                break
        if sizes:
            out[n.name] = min(sizes)
    return out


@shape_rule("Conv1D", "Pool1D")
def _one_d(node, ins, ctx):
    """The 2-D op's shape over (N, C, 1, L), the size-1 axis dropped."""
    from .shapes import SHAPE_FUNCS
    x = ins[0]
    if len(x) != 3:
        raise ctx.error(f"1-D layer input {tuple(x)} is not (N, C, L)")
    out = SHAPE_FUNCS["Conv" if node.op == "Conv1D" else "Pool"](node, [(x[0], x[1], 1, x[2])], ctx)
    return [(o[0], o[1], o[3]) for o in out]


@shape_rule("Conv3D", "Pool3D")
def _three_d(node, ins, ctx):
    x = ins[0]
    if len(x) != 5:
        raise ctx.error(f"3-D layer input {tuple(x)} is not (N, C, D, H, W)")
    a = node.attrs
    k, s, p = a["kernel"], a["stride"], a["pad"]
    sp = []
    for L, kk, ss, pp in zip(x[2:], k, s, p):
        if L is None:
            sp.append(None)
            continue
        o = (L + 2 * pp - kk) // ss + 1
        if o < 1:
            raise ctx.error(f"input {tuple(x)} is too small for kernel {tuple(k)} (pad {tuple(p)})")
        sp.append(o)
    if node.op == "Conv3D":
        w = node.p("weight")
        c = None if w is None else int(w.shape[0])
        return [(x[0], c, *sp)]
    return [(x[0], x[1], *sp)]
