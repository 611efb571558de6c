"""Shape rules of the embedding family: ``Embedding`` (Lasagne), ``Embed`` (Caffe); and which
network inputs are embedding indices."""
from __future__ import annotations

from .registry import shape_rule


@shape_rule("Embedding")
def _embedding(node, ins, ctx):
    return [tuple(ins[0]) + (int(node.attrs["output_size"]),)]


@shape_rule("Embed")
def _embed(node, ins, ctx):
    w = node.p("weight")
    n = int(node.attrs["num_output"])
    if w is not None and tuple(w.shape) != (int(node.attrs["input_dim"]), n):
        raise ctx.error(f"Embed weight shape {tuple(w.shape)} does not fit input_dim "
                        f"{node.attrs['input_dim']} and num_output {n}")
    return [tuple(ins[0]) + (n,)]


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
