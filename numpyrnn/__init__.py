"""numpyrnn: foreign recurrent weights as exact, fast, trainable torch modules."""

from . import reference
from .errors import LayoutError
from .modules import NumpyGRU, NumpyLSTM, NumpyRNN, load_numpy, to_numpy

__version__ = "0.1.0"

__all__ = [
    "LayoutError",
    "NumpyGRU",
    "NumpyLSTM",
    "NumpyRNN",
    "load_numpy",
    "to_numpy",
    "reference",
    "__version__",
]
