"""The Caffe layer handlers, one module per op family; importing this package registers them
in :data:`migrator.core.importers.caffe.registry.LAYER_HANDLERS`."""
from . import activation, conv, dense, embedding, layout, merge, norm, pool, recurrent, reduce, resize

__all__ = ["activation", "conv", "dense", "embedding", "layout", "merge", "norm", "pool", "recurrent",
           "reduce", "resize"]
