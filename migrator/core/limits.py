"""Size limits that keep a tiny hostile model file from making Migrator allocate without
bound: a prototxt or builder declaring a 100000x100000 input (or a layer whose output grows
to billions of values) is refused naming the layer before any array is allocated."""
from __future__ import annotations

import math
import os

from .errors import MigratorError

#: the most values one tensor may hold (2^28 float32 values = 1 GiB; the largest real
#: activations, e.g. 1x64x1024x1024, are far below); MIGRATOR_MAX_TENSOR_VALUES overrides it
MAX_TENSOR_VALUES = 1 << 28


def max_tensor_values() -> int:
    try:
        return max(int(os.environ.get("MIGRATOR_MAX_TENSOR_VALUES", "")), 1)
    except ValueError:
        return MAX_TENSOR_VALUES


def check_tensor_sizes(graph, file: str | None = None) -> None:
    """MigratorError naming the first layer whose (known) output shape is too large."""
    limit = max_tensor_values()
    for n in graph.nodes:
        for shp in (getattr(n, "out_shapes", None) or []):
            if not shp or any(d is None for d in shp):
                continue
            count = math.prod(max(int(d), 0) for d in shp)
            if count > limit:
                raise MigratorError(f"output shape {tuple(shp)} holds {count:.3g} values "
                                    f"({count * 4 / (1 << 30):.3g} GiB as float32), more than "
                                    f"Migrator runs ({limit:.3g}; MIGRATOR_MAX_TENSOR_VALUES raises "
                                    "it): a corrupt size in the model file?", file=file or n.provenance.file,
                                    layer=n.name)
