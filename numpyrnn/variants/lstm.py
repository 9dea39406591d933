r"""An LSTM with what ``nn.LSTM`` lacks: peepholes, clipping, coupled gates, other activations.

Parameters are ``nn.LSTM``'s (gates ``i, f, g, o``; ``weight_ih_l{k}[_reverse]``
``(4*H, I)``, ``weight_hh_l{k}`` ``(4*H, R)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
``weight_hr_l{k}`` ``(P, H)`` with ``proj_size``), plus, with ``peepholes``, the
diagonal peephole weights ``weight_ci_l{k}``, ``weight_cf_l{k}``, ``weight_co_l{k}``
``(H,)``. With ``σ`` the gate activation (``recurrent_activation``), ``φ`` the
cell activation (``activation``) and ``clip_a(v) = min(max(v, -a), a)``::

    i  = σ(clip_a(W_ii x + b_ii + W_hi h + b_hi + w_ci * c))
    f  = σ(clip_a(W_if x + b_if + W_hf h + b_hf + w_cf * c))      or f = 1 - i with input_forget
    g  = φ(clip_a(W_ig x + b_ig + W_hg h + b_hg))
    c' = clip_cell(f * c + i * g)
    o  = σ(clip_a(W_io x + b_io + W_ho h + b_ho + w_co * c'))
    h' = o * φ(c'),   then h' = clip_proj(W_hr h') with a projection

``a`` is ``preactivation_clip`` (ONNX ``clip``), ``clip_cell`` is ``cell_clip``
and ``clip_proj`` is ``proj_clip`` (TF1 ``LSTMCell``); each is off when ``None``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ._base import ACTIVATIONS, VariantBase, _check_clip, activate, activation_code, repack, unpack

__all__ = ["PeepholeLSTM"]


class PeepholeLSTM(VariantBase):
    r"""An LSTM with optional peepholes, clipping, coupled input-forget gate and activations.

    With every option at its default (``peepholes=False``) it computes exactly
    ``nn.LSTM``. See :mod:`numpyrnn.variants.lstm` for the equations.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, device, dtype:
            as in ``nn.LSTM``.
        peepholes: add the diagonal peephole weights ``weight_c{i,f,o}_l{k}`` (ONNX
            ``P``, TF1 ``use_peepholes=True``).
        cell_clip: clip the cell state to ``±cell_clip`` after each update (TF1).
        proj_clip: clip the projected output to ``±proj_clip`` (TF1, with ``proj_size``).
        preactivation_clip: clip every gate's input to ``±preactivation_clip``
            before its activation (ONNX ``clip``).
        input_forget: couple the forget gate to the input gate, ``f = 1 - i``
            (ONNX ``input_forget=1``); the forget-gate weights are kept but unused.
        recurrent_activation: ``σ``, a name in :data:`~numpyrnn.variants.ACTIVATIONS`.
        activation: ``φ`` of the cell input and output (``"tanh"``).

    Examples:
        >>> import torch
        >>> from numpyrnn.variants import PeepholeLSTM
        >>> lstm = PeepholeLSTM(5, 4, proj_size=3, peepholes=True, cell_clip=3.0)
        >>> sorted(k for k in lstm.state_dict() if k.endswith("l0"))[:3]
        ['bias_hh_l0', 'bias_ih_l0', 'weight_cf_l0']
        >>> y, (h, c) = lstm(torch.zeros(7, 2, 5))
        >>> tuple(y.shape), tuple(h.shape), tuple(c.shape)
        ((7, 2, 3), (1, 2, 3), (1, 2, 4))
    """

    mode = "LSTM"
    gates = 4
    __constants__ = [*VariantBase.__constants__, "_gate", "_act", "peepholes", "cell_clip", "proj_clip",
                     "preactivation_clip", "input_forget"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: torch.dtype | None = None, *,
                 peepholes: bool = False, cell_clip: float | None = None, proj_clip: float | None = None,
                 preactivation_clip: float | None = None, input_forget: bool = False,
                 recurrent_activation: str = "sigmoid", activation: str = "tanh") -> None:
        for name, flag in (("peepholes", peepholes), ("input_forget", input_forget)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
        self._gate = activation_code(recurrent_activation, "recurrent_activation")
        self._act = activation_code(activation, "activation")
        self.peepholes = peepholes
        self.input_forget = input_forget
        self.cell_clip = _check_clip(cell_clip, "cell_clip")
        self.proj_clip = _check_clip(proj_clip, "proj_clip")
        self.preactivation_clip = _check_clip(preactivation_clip, "preactivation_clip")
        if self.proj_clip and not proj_size:
            raise ValueError("proj_clip clips the projection's output; it needs proj_size > 0")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)

    @property
    def recurrent_activation(self) -> str:
        """The gates' activation ``σ``."""
        return list(ACTIVATIONS)[self._gate]

    @property
    def activation(self) -> str:
        """The cell activation ``φ``."""
        return list(ACTIVATIONS)[self._act]

    def _variant_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("peepholes", "input_forget"):
            if getattr(self, name):
                out[name] = True
        for name in ("cell_clip", "proj_clip", "preactivation_clip"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.recurrent_activation != "sigmoid":
            out["recurrent_activation"] = self.recurrent_activation
        if self.activation != "tanh":
            out["activation"] = self.activation
        return out

    def _unit_shapes(self, G: int, H: int, R: int, width: int) -> list[tuple[str, tuple[int, ...]]]:
        shapes: list[tuple[str, tuple[int, ...]]] = [("weight_ih", (G * H, width)), ("weight_hh", (G * H, R))]
        if self.bias:
            shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        if self.peepholes:
            shapes += [("weight_ci", (H,)), ("weight_cf", (H,)), ("weight_co", (H,))]
        if self.proj_size:
            shapes += [("weight_hr", (self.proj_size, H))]
        return shapes

    def _clip(self, v: Tensor) -> Tensor:
        a = self.preactivation_clip
        return torch.clamp(v, -a, a) if a > 0.0 else v

    def _direction(self, gi: Tensor, h: Tensor, c: Tensor, w: list[Tensor], mask: Optional[Tensor],
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
        H = self.hidden_size
        T = gi.size(0)
        k = 2
        b_hh: Optional[Tensor] = None
        if self.bias:
            b_hh = w[3]
            k = 4
        w_ci = w_cf = w_co = w[0]  # placeholders, read only with peepholes
        if self.peepholes:
            w_ci, w_cf, w_co = w[k], w[k + 1], w[k + 2]
            k += 3
        w_hr = w[k] if self.proj_size > 0 else w[0]
        outs: list[Tensor] = []
        for s in range(T):
            t = T - 1 - s if reverse else s
            gates = gi[t] + F.linear(h, w[1], b_hh)
            i_ = gates[:, :H]
            f_ = gates[:, H:2 * H]
            g_ = gates[:, 2 * H:3 * H]
            o_ = gates[:, 3 * H:]
            if self.peepholes:
                i_ = i_ + w_ci * c
                f_ = f_ + w_cf * c
            i = activate(self._clip(i_), self._gate)
            if self.input_forget:
                f = 1.0 - i
            else:
                f = activate(self._clip(f_), self._gate)
            g = activate(self._clip(g_), self._act)
            c_new = f * c + i * g
            if self.cell_clip > 0.0:
                c_new = torch.clamp(c_new, -self.cell_clip, self.cell_clip)
            if self.peepholes:
                o_ = o_ + w_co * c_new
            o = activate(self._clip(o_), self._gate)
            h_new = o * activate(c_new, self._act)
            if self.proj_size > 0:
                h_new = F.linear(h_new, w_hr)
                if self.proj_clip > 0.0:
                    h_new = torch.clamp(h_new, -self.proj_clip, self.proj_clip)
            if mask is not None:
                m = mask[t]
                h = torch.where(m, h_new, h)
                c = torch.where(m, c_new, c)
                outs.append(h_new * m.to(h_new.dtype))
            else:
                h = h_new
                c = c_new
                outs.append(h_new)
        if reverse:
            outs.reverse()
        return torch.stack(outs), h, c

    def forward(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]] = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``nn.LSTM``'s contract: ``(output, (h_n, c_n))`` for a Tensor or a PackedSequence.

        Args:
            input: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, ``(T, I)``
                unbatched, or a ``PackedSequence`` (not under TorchScript).
            hx: ``(h_0, c_0)`` of ``(L*D, N, R)`` and ``(L*D, N, H)``; zeros when ``None``.
        """
        if not torch.jit.is_scripting():
            if isinstance(input, PackedSequence):
                return self._forward_packed(input, hx)
        h0: Optional[Tensor] = None
        c0: Optional[Tensor] = None
        if hx is not None:
            h0, c0 = hx
        x, h0_, c0_, unbatched = self._prepare(input, h0, c0, None)
        y, h, c = self._run(x, h0_, c0_, None, self._weights())
        y, h, c = self._finish(y, h, c, unbatched)
        return y, (h, c)

    @torch.jit.unused
    def _forward_packed(self, input: PackedSequence, hx: Optional[tuple[Tensor, Tensor]]
                        ) -> tuple[Any, tuple[Tensor, Tensor]]:
        x, lengths = unpack(input)
        h0, c0 = (None, None) if hx is None else hx
        x, h0_, c0_, _ = self._prepare(x, h0, c0, lengths)
        y, h, c = self._run(x, h0_, c0_, lengths, self._weights())
        return repack(y, input), (h, c)
