"""numpyrnn: foreign recurrent weights as exact, fast, trainable torch modules."""

from . import compat, reference
from .api import load, load_all, read_model
from .compat import convert, safe_globals
from .detect import Detection, detect
from .errors import LayoutError
from .modules import NumpyGRU, NumpyLSTM, NumpyRNN, load_numpy, to_numpy
from .verify import VerifyReport, verify

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
    "verify",
    "detect",
    "Detection",
    "VerifyReport",
    "compat",
    "reference",
    "__version__",
]
