"""Reference kernels of the io family: ``Custom`` (always an error; ``Input`` needs none).
"""
from __future__ import annotations

from .registry import err, kernel


@kernel("Custom")
def _custom(node, xs):
    raise err(node, f"no reference implementation for layer type "
                     f"{node.attrs.get('class_name') or node.source_type}")
