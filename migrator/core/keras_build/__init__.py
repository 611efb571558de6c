"""MappingPlan -> keras.Model (``builder``), the few custom layers (``custom_layers``),
and the layer-by-layer Keras executor (``executor``).

Importing this package registers the custom layers with Keras, so
``keras.saving.load_model`` can read a saved model after ``import
migrator.core.keras_build``.
"""
from . import custom_layers  # noqa: F401  (registers the custom layers)
from . import caffe_catalogue_plain  # noqa: F401  (plain expressions CaffeLog, CaffeArgMax)
