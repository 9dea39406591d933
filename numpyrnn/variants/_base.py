r"""What the variant modules share: activations, the constructor contract and the driver.

A variant module is a plain ``nn.Module`` (not an ``nn.RNNBase``: torch's RNN
machinery and ``torch.compile``'s RNN graph break do not apply to it) with the
constructor arguments, ``forward(input, hx)`` contract and ``state_dict``
names of ``nn.GRU``/``nn.LSTM``. For each layer and direction the input
projection of every time step is one matmul (``F.linear`` over ``(T, N, I)``);
only the recurrent part runs step by step.

Shape symbols as in :mod:`numpyrnn.spec`: ``D`` directions, ``H`` hidden,
``I`` input, ``L`` layers, ``N`` batch, ``T`` time, ``R`` recurrent width.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["ACTIVATIONS", "activation_code", "activate"]

#: Activation names the variants accept, with what each computes.
ACTIVATIONS: dict[str, str] = {
    "sigmoid": "1 / (1 + exp(-x))",
    "hard_sigmoid": "clip(0.2 * x + 0.5, 0, 1)  (Keras 2, tf.keras 1.x, ONNX HardSigmoid's defaults)",
    "hard_sigmoid_keras3": "clip(x / 6 + 0.5, 0, 1) = relu6(x + 3) / 6  (Keras 3)",
    "tanh": "tanh(x)",
    "relu": "max(x, 0)",
    "linear": "x",
}
_CODES = {name: k for k, name in enumerate(ACTIVATIONS)}


def activation_code(name: Any, what: str) -> int:
    """The integer code of an activation name (what the compiled step branches on).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is not one of :data:`ACTIVATIONS`.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string such as 'sigmoid', got {type(name).__name__}")
    if name not in _CODES:
        raise ValueError(f"{what}={name!r} is not a known activation; expected one of {sorted(_CODES)}")
    return _CODES[name]


def activate(x: Tensor, code: int) -> Tensor:
    """Apply activation number ``code`` of :data:`ACTIVATIONS`."""
    if code == 0:
        return torch.sigmoid(x)
    if code == 1:
        return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)
    if code == 2:
        return F.hardsigmoid(x)
    if code == 3:
        return torch.tanh(x)
    if code == 4:
        return torch.relu(x)
    return x


def _check_clip(value: Any, what: str) -> float:
    """``None`` -> 0.0 (off); otherwise a positive finite float."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a positive number or None, got {type(value).__name__}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{what} must be a positive finite number or None, got {value!r}")
    return v


def reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` ``(T, N, F)`` within its own length; padding stays last."""
    T = x.size(0)
    t = torch.arange(T, device=x.device).unsqueeze(1)
    lens = lengths.to(x.device).unsqueeze(0)
    idx = torch.where(t < lens, lens - 1 - t, t)
    return x.gather(0, idx.unsqueeze(2).expand(x.shape))


class VariantBase(nn.Module):
    """The constructor, parameters and ``forward`` driver shared by the variants.

    Subclasses set :attr:`mode`, :attr:`gates` and :meth:`_unit_names`, and
    implement :meth:`_direction` (one layer and direction over a sequence).
    """

    mode: str = ""
    gates: int = 1
    __constants__ = ["mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "dropout", "bidirectional", "proj_size", "_per_unit"]
    # TorchScript compiles properties unless told not to; these are Python-only.
    __jit_unused_properties__ = ["directions", "recurrent_activation", "activation"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        for name, value, low in (("input_size", input_size, 0), ("hidden_size", hidden_size, 1),
                                 ("num_layers", num_layers, 1), ("proj_size", proj_size, 0)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= float(dropout) <= 1:  # type: ignore[operator]
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)  # type: ignore[arg-type]
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        D, G, H = 2 if bidirectional else 1, self.gates, hidden_size
        R = proj_size or H
        factory = dict(device=device, dtype=dtype)
        names: list[str] = []
        for layer in range(num_layers):
            width = input_size if layer == 0 else D * R
            for d in range(D):
                s = f"_l{layer}" + ("_reverse" if d else "")
                for name, shape in self._unit_shapes(G, H, R, width):
                    self.register_parameter(name + s, nn.Parameter(torch.empty(shape, **factory)))  # type: ignore[arg-type]
                    names.append(name + s)
        self._flat_weights_names = names
        self._per_unit = len(names) // (num_layers * D)
        self._flat_weights: list[Tensor] = [getattr(self, n) for n in names]
        self.reset_parameters()

    # -- what subclasses declare ----------------------------------------------------------
    def _unit_shapes(self, G: int, H: int, R: int, width: int) -> list[tuple[str, tuple[int, ...]]]:
        raise NotImplementedError

    def _direction(self, gi: Tensor, h: Tensor, c: Tensor, w: list[Tensor], mask: Optional[Tensor],
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    # -- module plumbing --------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter uniform in ``±1/sqrt(H)``."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                if p.device.type != "meta":
                    p.uniform_(-stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op: the variants never use cuDNN's fused kernels (kept for drop-in code)."""

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        out = super()._apply(fn, recurse)
        self._flat_weights = [getattr(self, n) for n in self._flat_weights_names]
        return out

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        names = self.__dict__.get("_flat_weights_names")
        if names is not None and name in names and "_flat_weights" in self.__dict__:
            self._flat_weights[names.index(name)] = value

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        for k, v in self._variant_options().items():
            s += f", {k}={v!r}"
        return s

    def _variant_options(self) -> dict[str, Any]:
        return {}

    # -- the driver -------------------------------------------------------------------------
    def _run(self, x: Tensor, h0: Tensor, c0: Tensor, lengths: Optional[Tensor],
             weights: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """All layers over seq-major ``x`` ``(T, N, I)``; ``h0``/``c0`` ``(L*D, N, ·)``."""
        D = 2 if self.bidirectional else 1
        mask: Optional[Tensor] = None
        if lengths is not None:
            t = torch.arange(x.size(0), device=x.device).unsqueeze(1)
            mask = (t < lengths.to(x.device).unsqueeze(0)).unsqueeze(2)
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        layer_in = x
        for layer in range(self.num_layers):
            outs: list[Tensor] = []
            for d in range(D):
                u = layer * D + d
                w = weights[u * self._per_unit:(u + 1) * self._per_unit]
                xin = layer_in
                reverse = d == 1
                if reverse and lengths is not None:
                    xin = reverse_within(layer_in, lengths)
                gi = F.linear(xin, w[0], w[2] if self.bias else None)  # every time step at once
                y, h, c = self._direction(gi, h0[u], c0[u], w, mask, reverse and lengths is None)
                if reverse and lengths is not None:
                    y = reverse_within(y, lengths)
                outs.append(y)
                hs.append(h)
                cs.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, 2)
            if self.dropout > 0.0 and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        return layer_in, torch.stack(hs), torch.stack(cs)

    def _weights(self) -> list[Tensor]:
        if torch.jit.is_scripting():
            return self._flat_weights
        return [getattr(self, n) for n in self._flat_weights_names]

    def _prepare(self, input: Tensor, hx: Optional[Tensor], cx: Optional[Tensor],
                 lengths: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, bool]:
        """Seq-major batched input and full initial states, checked like torch checks them."""
        unbatched = input.dim() == 2
        if input.dim() not in (2, 3):
            raise ValueError(f"{self.mode}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {input.size(-1)}")
        x = input.unsqueeze(1) if unbatched else input
        if self.batch_first and not unbatched and lengths is None:
            x = x.transpose(0, 1)
        N = x.size(1)
        LD = self.num_layers * (2 if self.bidirectional else 1)
        R = self.proj_size if self.proj_size > 0 else self.hidden_size
        h = self._state(hx, LD, N, R, unbatched, x, "hx")
        c = self._state(cx, LD, N, self.hidden_size, unbatched, x, "cx")
        return x, h, c, unbatched

    def _state(self, s: Optional[Tensor], LD: int, N: int, width: int, unbatched: bool, x: Tensor,
               what: str) -> Tensor:
        if s is None:
            return torch.zeros(LD, N, width, dtype=x.dtype, device=x.device)
        if unbatched:
            if s.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, {what} should also be 2-D but got {s.dim()}-D tensor")
            s = s.unsqueeze(1)
        elif s.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, {what} should also be 3-D but got {s.dim()}-D tensor")
        if s.size(0) != LD or s.size(1) != N or s.size(2) != width:
            raise RuntimeError(f"Expected hidden size ({LD}, {N}, {width}), got {list(s.shape)}")
        return s

    def _finish(self, y: Tensor, h: Tensor, c: Tensor, unbatched: bool) -> tuple[Tensor, Tensor, Tensor]:
        if unbatched:
            return y.squeeze(1), h.squeeze(1), c.squeeze(1)
        if self.batch_first:
            y = y.transpose(0, 1)
        return y, h, c


def unpack(packed: PackedSequence) -> tuple[Tensor, Tensor]:
    """A PackedSequence as seq-major padded ``(T, N, F)`` in the caller's batch order, and lengths."""
    from torch.nn.utils.rnn import pad_packed_sequence

    x, lengths = pad_packed_sequence(packed, batch_first=False)
    return x, lengths


def repack(y: Tensor, packed: PackedSequence) -> PackedSequence:
    """Padded seq-major output in the caller's batch order, packed like ``packed``."""
    sorted_y = y if packed.sorted_indices is None else y.index_select(1, packed.sorted_indices.to(y.device))
    T, N = sorted_y.size(0), sorted_y.size(1)
    bs = packed.batch_sizes.to(y.device)
    keep = torch.arange(N, device=y.device).unsqueeze(0) < bs[:T].unsqueeze(1)
    data = sorted_y[keep]
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
