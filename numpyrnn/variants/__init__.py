"""Modules for recurrent layers that ``torch.nn.GRU``/``LSTM`` cannot compute.

They take ``nn.GRU``'s and ``nn.LSTM``'s constructor arguments plus their own,
keep the ``forward(input, hx)`` contract and torch's ``state_dict`` names, and
are opt-in: the loaders build them only when asked with ``variants=True``.
"""

from ._base import ACTIVATIONS
from .gru import ResetAfterGRU, ResetBeforeGRU
from .loading import VariantWarning
from .lstm import PeepholeLSTM
from .wrap import Directions

__all__ = ["ACTIVATIONS", "ResetBeforeGRU", "ResetAfterGRU", "PeepholeLSTM", "Directions", "VariantWarning",
           "to_keras", "to_onnx", "to_tf1"]


def to_keras(module):
    """A variant (or its :class:`Directions` wrapper) as Keras 3 weights and layer arguments.

    Returns:
        ``(weights, config)``: one ``layer.set_weights`` list per layer, bottom first, and
        the constructor arguments (``reset_after``, ``recurrent_activation``,
        ``activation``, ``go_backwards``, ``merge_mode``) the Keras layers need.

    Raises:
        LayoutError: the module computes something Keras cannot (peepholes, clipping, ...).
    """
    from .loading import export

    return export("keras", module)


def to_onnx(module):
    """A variant (or its :class:`Directions` wrapper) as ONNX weights and node attributes.

    Returns:
        ``(layers, attributes)``: one ``{"W", "R", "B"[, "P"]}`` dict per node, bottom
        first, and the attributes every node needs (``linear_before_reset``, ``clip``,
        ``input_forget``, ``activations``, ``direction``, ``hidden_size``).

    Raises:
        LayoutError: the module computes something ONNX cannot (``cell_clip``, ...).
    """
    from .loading import export

    return export("onnx", module)


def to_tf1(module, forget_bias: float = 1.0):
    """A variant as TF1 ``GRUCell``/``LSTMCell`` variables and the cell's arguments.

    Returns:
        ``(layers, config)``: one mapping of bare variable names per layer (``{"fw", "bw"}``
        when bidirectional), bottom first, with ``forget_bias`` subtracted from the forget
        gate's bias again, and the ``LSTMCell`` arguments (``use_peepholes``, ``cell_clip``,
        ``proj_clip``, ``num_proj``, ``forget_bias``); ``{}`` for a ``GRUCell``.

    Raises:
        LayoutError: the module computes something TF1's cells cannot.
    """
    from .loading import export

    return export("tf1", module, forget_bias=forget_bias)
