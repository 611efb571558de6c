"""MappingPlan -> keras.Model (``builder``), the few custom layers (``custom_layers``),
and the layer-by-layer Keras executor (``executor``).

Importing this package registers the custom layers with Keras, so
``keras.saving.load_model`` can read a saved model after ``import
migrator.core.keras_build``.
"""
from . import (  # noqa: F401  (registers the custom layers, plain expressions, LasagneRNN)
    caffe_catalogue_plain,
    custom_layers,
    lasagne_catalogue_plain,
    recurrent_layers,
)
