"""Stand-in sub-module: ``lasagne.layers.embedding``."""
from .recurrent import EmbeddingLayer  # noqa: F401
