"""Migrator's recording stand-in for Lasagne (0.2 semantics).  See the parent package."""
__version__ = "0.2.dev1+migrator-recorder"
MIGRATOR_RECORDER = True

from . import utils, init, nonlinearities, random, objectives, updates, regularization  # noqa
from . import layers  # noqa
