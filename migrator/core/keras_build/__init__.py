"""MappingPlan -> keras.Model (``builder``), the Keras constructs of the spec classes that are
not built-in layers (``constructs``, one module per op family), the few custom layer classes
(``custom_layers``), and the layer-by-layer Keras executor (``executor``).

Importing this package registers the custom layers with Keras, so
``keras.saving.load_model`` can read a saved model after ``import
migrator.core.keras_build``.
"""
from . import (  # noqa: F401  (registers the custom layers, the constructs, LasagneRNN)
    constructs,
    custom_layers,
)
