"""The Keras constructs, one module per op family (:data:`migrator.core.ops.FAMILIES`): how each
spec class the mapping rules name that is not a built-in Keras layer becomes plain Keras.

Importing this package registers every construct in :data:`.registry.CONSTRUCTS` (and the
custom class ``LasagneRNN``); the registry and the shared helpers are in :mod:`.registry`.
"""
# each module registers the constructs of its family
from . import activation, conv, layout, merge, norm, pool, recurrent, reduce, resize  # noqa: F401
