"""Input / output family: InputLayer, and the classes refused by name (they become ``Custom``
nodes carrying the reason)."""
from __future__ import annotations

from .common import shape
from .registry import converter, refuse


@converter("InputLayer", ops=("Input",))
def input_layer(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """The network input, of the recorded shape."""
    return "Input", {"shape": shape(L["output_shape"])}, {}


#: Lasagne class -> why Migrator does not convert it (the Custom node's ``refused`` reason).
_REFUSED: dict[str, str] = {
    "ExpressionLayer": "ExpressionLayer runs an arbitrary Python/Theano function (user code) "
                       "that the builder description cannot capture",
    "TransformerLayer": "spatial transformer (bilinear resampling on a grid predicted by a "
                        "localization network) has no exact Keras equivalent in Migrator",
    "TPSTransformerLayer": "thin-plate-spline spatial transformer (grid from a localization "
                           "network, bilinear resampling) has no exact Keras equivalent in Migrator",
    "InverseLayer": "InverseLayer is the gradient of its target layer with respect to that "
                    "layer's input; Migrator does not derive gradients of converted layers",
}
for _cls, _why in _REFUSED.items():
    refuse(_cls, _why)

