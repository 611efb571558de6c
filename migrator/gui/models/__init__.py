"""Qt item models over :class:`migrator.core.document.Document`."""
from .layers import NAME_ROLE, SORT_ROLE, STATUS_ROLE, KerasLayerModel, SourceLayerModel  # noqa: F401
from .results import ResultsModel  # noqa: F401
