"""numpyrnn: foreign recurrent weights as exact, fast, trainable torch modules."""

from . import compat, reference
from .api import load, load_all, read_model
from .compat import convert, safe_globals
from .errors import LayoutError
from .modules import NumpyGRU, NumpyLSTM, NumpyRNN, load_numpy, to_numpy

__version__ = "0.1.0"

__all__ = [
    "LayoutError",
    "load",
    "load_all",
    "read_model",
    "NumpyGRU",
    "NumpyLSTM",
    "NumpyRNN",
    "load_numpy",
    "to_numpy",
    "convert",
    "safe_globals",
    "compat",
    "reference",
    "__version__",
]
