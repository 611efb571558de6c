"""Reference kernel of the dense family: ``Dense``.
"""
from __future__ import annotations

import numpy as np

from .activation import activation
from .registry import kernel, norm_axis, param


@kernel("Dense")
def _dense(node, xs):
    x = xs[0]
    a = node.attrs
    axis = norm_axis(int(a.get("axis", 1)), x.ndim)
    lead = x.shape[:axis]
    x2 = x.reshape(int(np.prod(lead, dtype=np.int64)), -1)
    w = param(node, "weight", x.dtype)
    layout = (node.params["weight"].layout or "OI").upper()
    y = x2 @ (w.T if layout == "OI" else w)
    b = param(node, "bias", x.dtype)
    if b is not None:
        y += b
    y = y.reshape(lead + (y.shape[-1],))
    return [activation(y, a.get("activation"), inplace=True)]
