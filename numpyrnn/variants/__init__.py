"""Modules for recurrent layers that ``torch.nn.GRU``/``LSTM`` cannot compute.

They take ``nn.GRU``'s and ``nn.LSTM``'s constructor arguments plus their own,
keep the ``forward(input, hx)`` contract and torch's ``state_dict`` names, and
are opt-in: the loaders build them only when asked with ``variants=True``.
"""

from ._base import ACTIVATIONS
from .gru import ResetAfterGRU, ResetBeforeGRU
from .lstm import PeepholeLSTM

__all__ = ["ACTIVATIONS", "ResetBeforeGRU", "ResetAfterGRU", "PeepholeLSTM"]
