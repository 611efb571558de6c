"""Stand-in: every name exists and computes nothing (not needed to describe a network)."""
from ._permissive import permissive_getattr as _pg

__getattr__ = _pg(__name__)
