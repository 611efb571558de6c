"""The mapping rules, one module per op family (:data:`migrator.core.ops.FAMILIES`).

Importing this package registers every rule in :data:`..registry.RULES`; shared helpers are
in :mod:`.common`.  The family modules are imported here explicitly; their order is
irrelevant to the result, since each op is registered exactly once (a second registration
raises :class:`migrator.core.registry.RegistrationError`).
"""
# each module registers the rules of its family
from . import activation, conv, dense, embedding, io, layout, merge, norm  # noqa: F401

# isort: split
from . import pool, recurrent, reduce, resize  # noqa: F401
