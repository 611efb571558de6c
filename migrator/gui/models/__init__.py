"""Qt item models over :class:`migrator.core.document.Document`."""
from .layers import KerasLayerModel, NAME_ROLE, SORT_ROLE, STATUS_ROLE, SourceLayerModel  # noqa: F401
from .results import ResultsModel  # noqa: F401
