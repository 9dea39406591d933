r"""GRUs that ``nn.GRU`` cannot compute: the reset gate before the matmul, other activations.

Parameters and names are ``nn.GRU``'s: per layer ``k`` and direction,
``weight_ih_l{k}[_reverse]`` ``(3*H, I)`` as ``(W_ir|W_iz|W_in)``,
``weight_hh_l{k}`` ``(3*H, H)``, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``(3*H,)``.
With ``σ`` the gate activation (``recurrent_activation``) and ``φ`` the
candidate's (``activation``)::

    r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    n  = φ(W_in x + b_in + W_hn (r * h) + b_hn)      ResetBeforeGRU
    n  = φ(W_in x + b_in + r * (W_hn h + b_hn))      ResetAfterGRU (= nn.GRU with σ, φ = sigmoid, tanh)
    h' = (1 - z) * n + z * h

``ResetBeforeGRU`` is Keras ``GRU(reset_after=False)``, ONNX ``GRU`` with
``linear_before_reset=0`` (ONNX's default) and TF1 ``GRUCell``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ._base import ACTIVATIONS, VariantBase, _check_clip, activate, activation_code, repack, unpack

__all__ = ["ResetBeforeGRU", "ResetAfterGRU"]


class _GRU(VariantBase):
    mode = "GRU"
    gates = 3
    reset_after: bool = False
    __constants__ = [*VariantBase.__constants__, "_gate", "_act", "reset_after", "preactivation_clip"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: torch.dtype | None = None, *,
                 recurrent_activation: str = "sigmoid", activation: str = "tanh",
                 preactivation_clip: float | None = None) -> None:
        self.preactivation_clip = _check_clip(preactivation_clip, "preactivation_clip")
        self._gate = activation_code(recurrent_activation, "recurrent_activation")
        self._act = activation_code(activation, "activation")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)

    @property
    def recurrent_activation(self) -> str:
        """The gates' activation ``σ``: a name in :data:`numpyrnn.variants.ACTIVATIONS`."""
        return list(ACTIVATIONS)[self._gate]

    @property
    def activation(self) -> str:
        """The candidate's activation ``φ``."""
        return list(ACTIVATIONS)[self._act]

    def _variant_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.recurrent_activation != "sigmoid":
            out["recurrent_activation"] = self.recurrent_activation
        if self.activation != "tanh":
            out["activation"] = self.activation
        if self.preactivation_clip:
            out["preactivation_clip"] = self.preactivation_clip
        return out

    def _clip(self, v: Tensor) -> Tensor:
        a = self.preactivation_clip
        return torch.clamp(v, -a, a) if a > 0.0 else v

    def _unit_shapes(self, G: int, H: int, R: int, width: int) -> list[tuple[str, tuple[int, ...]]]:
        shapes: list[tuple[str, tuple[int, ...]]] = [("weight_ih", (G * H, width)), ("weight_hh", (G * H, H))]
        if self.bias:
            shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        return shapes

    def _direction(self, gi: Tensor, h: Tensor, c: Tensor, w: list[Tensor], mask: Optional[Tensor],
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
        H = self.hidden_size
        T = gi.size(0)
        w_hh = w[1]
        b_hh: Optional[Tensor] = w[3] if self.bias else None
        w_rz = w_hh[: 2 * H]
        w_n = w_hh[2 * H:]
        b_rz: Optional[Tensor] = None
        b_n: Optional[Tensor] = None
        if b_hh is not None:
            b_rz = b_hh[: 2 * H]
            b_n = b_hh[2 * H:]
        outs: list[Tensor] = []
        for s in range(T):
            t = T - 1 - s if reverse else s
            g = gi[t]
            if self.reset_after:
                gh = F.linear(h, w_hh, b_hh)
                rz = activate(self._clip(g[:, : 2 * H] + gh[:, : 2 * H]), self._gate)
                r, z = rz[:, :H], rz[:, H:]
                n = activate(self._clip(g[:, 2 * H:] + r * gh[:, 2 * H:]), self._act)
            else:
                rz = activate(self._clip(g[:, : 2 * H] + F.linear(h, w_rz, b_rz)), self._gate)
                r, z = rz[:, :H], rz[:, H:]
                n = activate(self._clip(g[:, 2 * H:] + F.linear(r * h, w_n, b_n)), self._act)
            new = n + z * (h - n)
            if mask is not None:
                m = mask[t]
                h = torch.where(m, new, h)
                outs.append(new * m.to(new.dtype))
            else:
                h = new
                outs.append(new)
        if reverse:
            outs.reverse()
        return torch.stack(outs), h, c

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``nn.GRU``'s contract: ``(output, h_n)`` for a Tensor or a PackedSequence.

        Args:
            input: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, ``(T, I)``
                unbatched, or a ``PackedSequence`` (not under TorchScript).
            hx: ``(L*D, N, H)`` (``(L*D, H)`` unbatched); zeros when ``None``.

        Returns:
            ``output`` ``(T, N, D*H)`` (or a PackedSequence) and ``h_n`` ``(L*D, N, H)``.
        """
        if not torch.jit.is_scripting():
            if isinstance(input, PackedSequence):
                return self._forward_packed(input, hx)
        x, h0, c0, unbatched = self._prepare(input, hx, None, None)
        y, h, c = self._run(x, h0, c0, None, self._weights())
        y, h, c = self._finish(y, h, c, unbatched)
        return y, h

    @torch.jit.unused
    def _forward_packed(self, input: PackedSequence, hx: Optional[Tensor]) -> tuple[Any, Tensor]:
        x, lengths = unpack(input)
        x, h0, c0, _ = self._prepare(x, hx, None, lengths)
        y, h, _ = self._run(x, h0, c0, lengths, self._weights())
        return repack(y, input), h


class ResetBeforeGRU(_GRU):
    r"""A GRU whose reset gate multiplies ``h`` before the recurrent matmul.

    ``n = φ(W_in x + b_in + W_hn (r * h) + b_hn)``; everything else is
    ``nn.GRU``'s (see :mod:`numpyrnn.variants.gru`). Keras ``reset_after=False``,
    ONNX ``linear_before_reset=0`` and TF1 ``GRUCell`` compute this.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype: as in
            ``nn.GRU``.
        recurrent_activation: ``σ`` of the ``r`` and ``z`` gates, a name in
            :data:`~numpyrnn.variants.ACTIVATIONS` (``"sigmoid"``, ``"hard_sigmoid"``,
            ``"hard_sigmoid_keras3"``, ...).
        activation: ``φ`` of the candidate ``n`` (``"tanh"``).
        preactivation_clip: clip every gate's input to ``±preactivation_clip``
            before its activation (ONNX ``clip``); off when ``None``.

    Examples:
        >>> import torch
        >>> from numpyrnn.variants import ResetBeforeGRU
        >>> gru = ResetBeforeGRU(5, 4, batch_first=True, recurrent_activation="hard_sigmoid")
        >>> y, h = gru(torch.zeros(2, 7, 5))
        >>> tuple(y.shape), tuple(h.shape)
        ((2, 7, 4), (1, 2, 4))
    """

    reset_after = False


class ResetAfterGRU(_GRU):
    r"""``nn.GRU``'s equations with other gate or candidate activations.

    With ``"sigmoid"`` and ``"tanh"`` it computes exactly what ``nn.GRU``
    computes; it exists for the sources that keep torch's reset placement but
    change ``σ`` or ``φ`` (Keras ``recurrent_activation="hard_sigmoid"``, ONNX
    ``activations`` with ``linear_before_reset=1``). Arguments as in
    :class:`ResetBeforeGRU`.
    """

    reset_after = True
