"""Embedding family: Lasagne's EmbeddingLayer -> ``Embedding``."""
from __future__ import annotations

from .registry import converter


@converter("EmbeddingLayer", ops=("Embedding",))
def embedding(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """EmbeddingLayer: W (input_size, output_size) 'VE'."""
    a = L.get("attrs", {})
    return "Embedding", {"input_size": int(a["input_size"]),
                         "output_size": int(a["output_size"])}, \
        {"W": ("weight", None, "VE")}
