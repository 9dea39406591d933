r"""Output merge and time direction around any recurrent module: :class:`Directions`.

These belong to the layer, not to the cell, so they wrap a module (``nn.GRU``,
``nn.LSTM``, a numpyrnn module or a variant) instead of changing it:

* ``merge_mode`` (Keras ``Bidirectional``): how a bidirectional module's
  forward and backward outputs ``y_f``, ``y_b`` (each ``(..., R)``, aligned in
  time) become one: ``"concat"`` ``[y_f, y_b]`` (torch's own), ``"sum"``
  ``y_f + y_b``, ``"mul"`` ``y_f * y_b``, ``"ave"`` ``(y_f + y_b) / 2``, or
  ``None``: the pair ``(y_f, y_b)``.
* ``time`` for a unidirectional module: ``"forward"``; ``"go_backwards"``
  (Keras): the module reads the sequence from its end and its output stays in
  the order it was computed, so ``output[0]`` belongs to the last input step;
  ``"reverse"`` (ONNX ``direction="reverse"``): it reads from the end and
  ``output[t]`` belongs to input step ``t``.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

__all__ = ["Directions", "MERGE_MODES", "TIMES"]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)
TIMES = ("forward", "go_backwards", "reverse")


class Directions(nn.Module):
    """Merge a bidirectional module's outputs, or run a unidirectional one backwards in time.

    ``forward(input, hx)`` keeps the wrapped module's contract; only the output
    changes (see :mod:`numpyrnn.variants.wrap`). The final states are the
    module's own. The ``state_dict`` is the module's under ``module.``.

    Args:
        module: the recurrent module.
        merge_mode: one of :data:`MERGE_MODES`; anything but ``"concat"`` needs a
            bidirectional module.
        time: one of :data:`TIMES`; anything but ``"forward"`` needs a
            unidirectional module and a padded Tensor input.

    Examples:
        >>> import torch
        >>> from numpyrnn.variants import Directions
        >>> m = Directions(torch.nn.GRU(3, 4, bidirectional=True), merge_mode="sum")
        >>> y, h = m(torch.zeros(5, 2, 3))
        >>> tuple(y.shape), tuple(h.shape)
        ((5, 2, 4), (2, 2, 4))
    """

    def __init__(self, module: nn.Module, *, merge_mode: Optional[str] = "concat", time: str = "forward") -> None:
        super().__init__()
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode={merge_mode!r}: expected one of {MERGE_MODES}")
        if time not in TIMES:
            raise ValueError(f"time={time!r}: expected one of {TIMES}")
        bidirectional = bool(getattr(module, "bidirectional", False))
        if merge_mode != "concat" and not bidirectional:
            raise ValueError(f"merge_mode={merge_mode!r} merges two directions; the module is unidirectional")
        if time != "forward" and bidirectional:
            raise ValueError(f"time={time!r} runs one direction backwards; the module is bidirectional "
                             f"(its reverse direction already reads from the end)")
        self.module = module
        self.merge_mode = merge_mode
        self.time = time
        self.batch_first = bool(getattr(module, "batch_first", False))
        self.hidden_size = int(getattr(module, "proj_size", 0) or getattr(module, "hidden_size", 0))

    def extra_repr(self) -> str:
        return f"merge_mode={self.merge_mode!r}, time={self.time!r}"

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        from torch.nn.utils.rnn import PackedSequence

        packed = isinstance(input, PackedSequence)
        if self.time != "forward":
            if packed:
                raise TypeError(f"time={self.time!r} takes a padded Tensor, not a PackedSequence: reversing "
                                "each sequence within its length is what a bidirectional module's reverse direction does")
            axis = 1 if (self.batch_first and input.dim() == 3) else 0
            y, state = self.module(torch.flip(input, [axis]), hx)
            return (torch.flip(y, [axis]) if self.time == "reverse" else y), state
        y, state = self.module(input, hx)
        if self.merge_mode == "concat":
            return y, state
        data = y.data if packed else y
        out = _merge(data, self.hidden_size, self.merge_mode)
        if packed and not isinstance(out, tuple):
            return PackedSequence(out, y.batch_sizes, y.sorted_indices, y.unsorted_indices), state
        if packed:
            return tuple(PackedSequence(o, y.batch_sizes, y.sorted_indices, y.unsorted_indices) for o in out), state
        return out, state


def _merge(y: Tensor, R: int, mode: Optional[str]) -> Union[Tensor, tuple[Tensor, Tensor]]:
    fwd, bwd = y[..., :R], y[..., R:]
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    return fwd, bwd
