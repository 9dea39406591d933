"""``NumpyGRU``, ``NumpyLSTM`` and ``NumpyRNN``: the torch modules plus numpy constructors.

They subclass ``torch.nn.GRU``/``LSTM``/``RNN`` and change nothing about them:
same constructor, same ``forward``, same ``state_dict`` keys and shapes. What
they add are class methods that build a module from foreign weights and methods
that load or export in place. Every one of them picks a layout and calls the
engine; none copies weights by hand.

Shape symbols: ``G`` gates (GRU 3, LSTM 4, RNN 1), ``D`` directions, ``H``
hidden, ``I`` input, ``L`` layers, ``P`` projection, ``R`` = ``P`` or ``H``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from . import engine
from .layouts.blocks import BLOCKS
from .spec import RNNSpec

__all__ = ["NumpyGRU", "NumpyLSTM", "NumpyRNN", "load_numpy", "to_numpy"]

ArrayLike = Any


def load_numpy(
    rnn: nn.RNNBase,
    w0: ArrayLike,
    w: ArrayLike | None = None,
    *,
    b0: ArrayLike | None = None,
    b: ArrayLike | None = None,
    proj: ArrayLike | None = None,
    gates: str | None = None,
    rowwise: bool = False,
) -> nn.RNNBase:
    """Load block-layout arrays into any ``nn.GRU``/``nn.LSTM``/``nn.RNN``, in place.

    The arrays must match the module's configuration. Every array is validated
    before the first write, so a failure leaves every parameter bit-identical.
    The parameters keep their identity: optimizers built earlier keep working,
    and on CUDA the weights stay in cuDNN's flat buffer.

    Args:
        rnn: the module to load into (a plain torch module or a numpyrnn one).
        w0: ``(D, H, G*I + G*R)``: layer 0's input and recurrent weights.
        w: ``(L-1, D, H, G*D*R + G*R)``: layers above 0; ``None`` for one layer.
        b0: ``(D, H, 2*G)``: layer 0's input-side then recurrent-side biases.
            Required when the module has biases.
        b: ``(L-1, D, H, 2*G)``: biases of the layers above 0.
        proj: ``(L, D, P, H)``: LSTM projections (``weight_hr``).
        gates: gate order used in the arrays, e.g. ``"zrn"``; ``None`` is torch's
            (GRU ``rzn``, LSTM ``ifgo``).
        rowwise: read each ``(H, G*width)`` block as a plain row-major reshape to
            ``(G*H, width)``, as the original row-by-row loop did.

    Returns:
        ``rnn`` itself.

    Raises:
        LayoutError: an array has the wrong shape, holds NaN/Inf, or does not fit
            the module (biases given to a bias-free module, and so on).
        TypeError: an array is missing or is not floating point.
    """
    source = dict(w0=w0, w=w, b0=b0, b=b, proj=proj)
    return engine.load_layout(rnn, BLOCKS, source, options=dict(gates=gates, rowwise=rowwise, biases=True))


def to_numpy(rnn: nn.RNNBase, *, gates: str | None = None, rowwise: bool = False) -> dict[str, np.ndarray | None]:
    """Export any ``nn.GRU``/``nn.LSTM``/``nn.RNN`` to the block layout.

    The exact inverse of :func:`load_numpy`: a round trip is bit-exact.

    Args:
        rnn: the module to export.
        gates: gate order for the arrays; ``None`` is torch's.
        rowwise: write blocks the way the original row loop read them.

    Returns:
        A dict with keys ``w0``, ``w``, ``b0``, ``b`` and ``proj``, fresh arrays in
        the module's dtype. A key is ``None`` where it does not apply (``w`` for
        one layer, ``b0``/``b`` without bias, ``proj`` without projection).

    Raises:
        TypeError: the module is bfloat16, which numpy cannot hold.
    """
    return engine.export_layout(rnn, BLOCKS, options=dict(gates=gates, rowwise=rowwise, biases=True))


class _NumpyMixin:
    """Methods shared by the three numpyrnn modules. Adds no state and no ``forward``."""

    _mode: str = ""
    # TorchScript compiles properties unless told not to; ``spec`` is Python-only. This
    # list replaces the parent's, so it repeats what ``nn.RNNBase`` lists (``all_weights``).
    # Read from torch at import: a torch without the attribute gets the one entry numpyrnn adds.
    __jit_unused_properties__ = [*getattr(nn.RNNBase, "__jit_unused_properties__", []), "spec"]

    def flatten_parameters(self) -> None:
        """``nn.RNNBase.flatten_parameters``, except on a module sharded by FSDP2's ``fully_shard``.

        FSDP2 gathers the full weights into a buffer of its own before each forward and
        refills that buffer after every optimizer step. Flattening would move them into
        cuDNN's buffer instead, which FSDP2 never refills, so later steps would compute
        with stale weights. Under FSDP2 the weights stay where FSDP2 keeps them (cuDNN
        copies them per call and torch warns that they are not one contiguous chunk).
        """
        if _sharded_by_fsdp2(self):
            return
        super().flatten_parameters()  # type: ignore[misc]

    def __setstate__(self, state: dict) -> None:
        # ``copy.deepcopy`` and unpickling end here. ``nn.RNNBase`` rebuilds its weight
        # lists but leaves the copied weights in separate storages, so cuDNN would copy
        # them on every call (with a warning); re-flatten once instead. A no-op off CUDA.
        super().__setstate__(state)  # type: ignore[misc]
        self.flatten_parameters()  # type: ignore[attr-defined]

    @classmethod
    def _from_blocks(cls, mode: str, arrays: dict, *, num_layers, gates, rowwise, bias,
                     batch_first, dropout, device, dtype, freeze):
        return engine.import_layout(
            cls, BLOCKS, arrays, mode=mode,  # type: ignore[arg-type]
            infer=dict(num_layers=num_layers, bias=bias),
            options=dict(gates=gates, rowwise=rowwise, biases=arrays.get("b0") is not None),
            batch_first=batch_first, dropout=dropout, device=device, dtype=dtype, freeze=freeze,
        )

    def load_numpy(
        self,
        w0: ArrayLike,
        w: ArrayLike | None = None,
        *,
        b0: ArrayLike | None = None,
        b: ArrayLike | None = None,
        proj: ArrayLike | None = None,
        gates: str | None = None,
        rowwise: bool = False,
    ):
        """Load block-layout arrays in place and return the module.

        See :func:`numpyrnn.load_numpy` for the arguments; the arrays must match
        this module's configuration, and a failure changes nothing.
        """
        return load_numpy(self, w0, w, b0=b0, b=b, proj=proj, gates=gates, rowwise=rowwise)  # type: ignore[arg-type]

    def to_numpy(self, *, gates: str | None = None, rowwise: bool = False) -> dict[str, np.ndarray | None]:
        """Export to the block layout: the exact inverse of :meth:`load_numpy`.

        See :func:`numpyrnn.to_numpy`.
        """
        return to_numpy(self, gates=gates, rowwise=rowwise)  # type: ignore[arg-type]

    # -- foreign layouts: each picks its layout module and calls the engine ------------
    @classmethod
    def _from_layout(cls, layout_name: str, source: Any, *, options: dict, batch_first: bool,
                     dropout: float, device: Any, dtype: torch.dtype | None, freeze: bool,
                     nonlinearity: str | None = None):
        mode = cls._mode
        if nonlinearity is not None:
            if not mode.startswith("RNN"):
                raise TypeError(f"nonlinearity= applies to NumpyRNN only; {cls.__name__} has fixed activations")
            mode = _rnn_mode(nonlinearity)
        layout = _layout(layout_name)
        return engine.import_layout(cls, layout, source, mode=mode, options=options,  # type: ignore[arg-type]
                                    batch_first=batch_first, dropout=dropout, device=device,
                                    dtype=dtype, freeze=freeze, strict_mode=nonlinearity is not None)

    @classmethod
    def _variant(cls, fmt: str, source: Any, *, options: dict, variants: bool, fallback: Any, extra: dict | None = None,
                 **kw: Any) -> Any:
        """With ``variants=True``: the variant module ``source`` needs (see :mod:`numpyrnn.variants`)."""
        if not isinstance(variants, bool):
            raise TypeError(f"variants should be of type bool, got: {type(variants).__name__}")
        if not variants or cls._mode.startswith("RNN"):
            return fallback()
        from .variants import loading

        return loading.load(fmt, source, mode=cls._mode, options=options, fallback=fallback, extra=extra,
                            caller=f"{cls.__name__}.from_{fmt}", **kw)

    @classmethod
    def from_keras(cls, source: Any, *, batch_first: bool = True, dropout: float = 0.0, device: Any = None,
                   dtype: torch.dtype | None = None, freeze: bool = False,
                   nonlinearity: str | None = None, variants: bool = False):
        """Build from Keras 3 weights: layers, ``Bidirectional`` wrappers, or ``get_weights()`` lists.

        See the Keras page of the documentation for the mapping and what is refused.

        Args:
            source: a ``keras.layers.GRU``/``LSTM``/``SimpleRNN`` (or a ``Bidirectional``
                wrapping one, merge mode ``concat``), a list of those bottom first, or the
                raw ``layer.get_weights()`` arrays (3, 6 for bidirectional, or a list of
                such lists for a stack).
            batch_first: defaults to ``True`` like Keras.
            dropout, device, dtype, freeze: as in ``from_numpy``.
            nonlinearity: ``NumpyRNN`` only: ``"tanh"`` or ``"relu"``, for sources that do not
                record their activation (raw ``get_weights()`` lists); a source that records another is refused.
                ``None`` takes the source's, else tanh.

            variants: build a :mod:`numpyrnn.variants` module (with a
                :class:`~numpyrnn.variants.Directions` wrapper for ``go_backwards`` or a merge mode)
                for what torch cannot compute, instead of refusing it; a
                :class:`~numpyrnn.variants.VariantWarning` names the module built.

        Raises:
            LayoutError: the layer computes something torch cannot (``reset_after=False``,
                other activations, ``go_backwards``, other merge modes) and ``variants``
                is false, or bad shapes.
        """
        def plain():
            return cls._from_layout("keras", source, options={}, batch_first=batch_first, dropout=dropout,
                                    device=device, dtype=dtype, freeze=freeze, nonlinearity=nonlinearity)

        return cls._variant("keras", source, options={}, variants=variants, fallback=plain,
                            batch_first=batch_first, dropout=dropout, device=device, dtype=dtype, freeze=freeze)

    def to_keras(self) -> list:
        """One entry per layer, bottom first: the list that ``layer.set_weights`` takes."""
        return engine.export_layout(self, _layout("keras"))  # type: ignore[arg-type]

    @classmethod
    def from_onnx(cls, source: Any, *, linear_before_reset: int | None = None, batch_first: bool = False,
                  dropout: float = 0.0, device: Any = None, dtype: torch.dtype | None = None, freeze: bool = False,
                  nonlinearity: str | None = None, variants: bool = False):
        """Build from ONNX ``GRU``/``LSTM``/``RNN`` weights.

        Args:
            source: a mapping with ``W``, ``R`` and optional ``B`` in ONNX shapes, a list
                of such mappings for a stack, or an ``onnx.ModelProto`` whose recurrent
                nodes take their weights from initializers.
            linear_before_reset: for a GRU given as arrays it must be stated, and must be 1
                (ONNX's default 0 is a GRU that torch cannot represent).
            batch_first, dropout, device, dtype, freeze: as in ``from_numpy``.
            nonlinearity: ``NumpyRNN`` only: ``"tanh"`` or ``"relu"``, for sources that do not
                record their activation (arrays); a source that records another is refused.
                ``None`` takes the source's, else tanh.

            variants: build a :mod:`numpyrnn.variants` module for what torch cannot
                compute (``linear_before_reset=0``, peepholes ``P``, ``clip``, ``input_forget``,
                other activations; a :class:`~numpyrnn.variants.Directions` wrapper for
                ``direction="reverse"``) instead of refusing it; a
                :class:`~numpyrnn.variants.VariantWarning` names the module built.

        Raises:
            LayoutError: ``linear_before_reset`` 0 or missing, peepholes, ``clip``,
                ``input_forget``, non-default activations, ``direction="reverse"`` (without
                ``variants``), or bad shapes.
        """
        def plain():
            return cls._from_layout("onnx", source, options=dict(linear_before_reset=linear_before_reset),
                                    batch_first=batch_first, dropout=dropout, device=device, dtype=dtype,
                                    freeze=freeze, nonlinearity=nonlinearity)

        return cls._variant("onnx", source, options=dict(linear_before_reset=linear_before_reset), variants=variants,
                            fallback=plain, batch_first=batch_first, dropout=dropout, device=device, dtype=dtype,
                            freeze=freeze)

    def to_onnx(self) -> list:
        """One ``{"W", "R", "B"}`` dict per layer, bottom first, runnable in onnxruntime as is."""
        return engine.export_layout(self, _layout("onnx"))  # type: ignore[arg-type]

    @classmethod
    def from_flax(cls, params: Any, *, batch_first: bool = True, dropout: float = 0.0, device: Any = None,
                  dtype: torch.dtype | None = None, freeze: bool = False,
                  nonlinearity: str | None = None):
        """Build from Flax linen cell, ``nn.RNN`` or ``nn.Bidirectional`` params (or a list of them).

        Arrays may be jax arrays; jax is imported only when they are.

        Args:
            params: a ``GRUCell``/``LSTMCell``/``OptimizedLSTMCell``/``SimpleCell`` param dict,
                ``{"cell": ...}`` from ``nn.RNN``, ``{"forward_rnn": ..., "backward_rnn": ...}``
                from ``nn.Bidirectional``, or a list of those, bottom first.
            batch_first: defaults to ``True`` like Flax.
            dropout, device, dtype, freeze: as in ``from_numpy``.
            nonlinearity: ``NumpyRNN`` only: ``"tanh"`` or ``"relu"``, for sources that do not
                record their activation (Flax params never do); a source that records another is refused.
                ``None`` takes the source's, else tanh.

        Raises:
            LayoutError: missing, extra or wrongly nested keys (the message names the key path).
        """
        return cls._from_layout("flax", params, options={}, batch_first=batch_first, dropout=dropout,
                                device=device, dtype=dtype, freeze=freeze, nonlinearity=nonlinearity)

    def to_flax(self) -> list:
        """One ``nn.RNN`` (``{"cell": ...}``) or ``nn.Bidirectional`` param tree per layer, bottom first."""
        return engine.export_layout(self, _layout("flax"))  # type: ignore[arg-type]

    @classmethod
    def from_tf1(cls, source: Any, *, forget_bias: float = 1.0, batch_first: bool = True, dropout: float = 0.0,
                 device: Any = None, dtype: torch.dtype | None = None, freeze: bool = False,
                 nonlinearity: str | None = None, variants: bool = False, cell_clip: float | None = None,
                 proj_clip: float | None = None):
        """Build from TF1 ``LSTMCell``/``BasicLSTMCell`` variables.

        Args:
            source: a mapping with ``kernel`` ``[I+R, 4H]`` (gates ``i, j, f, o``), ``bias``
                ``[4H]`` and optionally ``projection/kernel`` ``[H, P]``; a list of those for a
                stack; ``{"fw": ..., "bw": ...}`` for bidirectional.
            forget_bias: TF1 adds it at run time and does not store it; it is folded into
                the forget-gate bias. Use 0 for ``CudnnLSTM``-compatible checkpoints.
            batch_first: defaults to ``True`` like TF1's ``dynamic_rnn`` (``time_major=False``);
                pass ``False`` for ``time_major=True`` graphs.
            dropout, device, dtype, freeze: as in ``from_numpy``.
            nonlinearity: ``NumpyRNN`` only: ``"tanh"`` or ``"relu"``, for sources that do not
                record their activation (TF1 variables never do); a source that records another is refused.
                ``None`` takes the source's, else tanh.

            variants: build a :mod:`numpyrnn.variants` module for ``GRUCell`` variables
                (reset before the matmul) and ``LSTMCell`` peepholes instead of refusing them; a
                :class:`~numpyrnn.variants.VariantWarning` names the module built.
            cell_clip, proj_clip: ``LSTMCell``'s clipping, which checkpoints do not record; needs
                ``variants=True``.

        Raises:
            LayoutError: a ``GRUCell`` (it resets before the matmul) or peepholes without
                ``variants``, or bad shapes.
        """
        if (cell_clip is not None or proj_clip is not None) and not variants:
            raise TypeError("cell_clip and proj_clip are computed by numpyrnn.variants.PeepholeLSTM only: "
                            "pass variants=True")

        def plain():
            return cls._from_layout("tf1", source, options=dict(forget_bias=forget_bias), batch_first=batch_first,
                                    dropout=dropout, device=device, dtype=dtype, freeze=freeze,
                                    nonlinearity=nonlinearity)

        return cls._variant("tf1", source, options=dict(forget_bias=forget_bias), variants=variants, fallback=plain,
                            extra=dict(cell_clip=cell_clip, proj_clip=proj_clip), batch_first=batch_first,
                            dropout=dropout, device=device, dtype=dtype, freeze=freeze)

    def to_tf1(self, *, forget_bias: float = 1.0) -> list:
        """One TF1 variable mapping per layer (``{"fw", "bw"}`` when bidirectional), bottom
        first, with ``forget_bias`` subtracted from the forget-gate bias again."""
        return engine.export_layout(self, _layout("tf1"), options=dict(forget_bias=forget_bias))  # type: ignore[arg-type]

    @property
    def spec(self) -> RNNSpec:
        """The module's configuration as an :class:`~numpyrnn.spec.RNNSpec`."""
        return RNNSpec.of(self)  # type: ignore[arg-type]


def _sharded_by_fsdp2(module: object) -> bool:
    """Whether ``fully_shard`` manages ``module`` (it can only if FSDP2 was imported)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    fsdp_module = getattr(fsdp, "FSDPModule", None)
    return fsdp_module is not None and isinstance(module, fsdp_module)


def _layout(name: str):
    """The layout object of a foreign format, imported on first use."""
    from importlib import import_module

    return getattr(import_module(f".layouts.{name}", __package__), name.upper())


class NumpyGRU(_NumpyMixin, nn.GRU):
    r"""``torch.nn.GRU`` with numpy constructors; identical in every other respect.

    Gates in torch order ``r, z, n``: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``
    and ``h' = (1 - z) * n + z * h``. ``b_hn`` sits inside the reset product, so
    input-side and recurrent-side biases of the ``n`` gate cannot be merged.

    Example:
        >>> import numpy as np
        >>> from numpyrnn import NumpyGRU
        >>> rng = np.random.default_rng(0)
        >>> w0 = rng.standard_normal((2, 4, 3 * (5 + 4)), dtype=np.float32)
        >>> gru = NumpyGRU.from_numpy(w0)
        >>> gru
        NumpyGRU(5, 4, bias=False, bidirectional=True)
    """

    _mode = "GRU"

    @classmethod
    def from_numpy(
        cls,
        w0: ArrayLike,
        w: ArrayLike | None = None,
        *,
        b0: ArrayLike | None = None,
        b: ArrayLike | None = None,
        num_layers: int | None = None,
        gates: str | None = None,
        rowwise: bool = False,
        bias: bool | None = None,
        batch_first: bool = False,
        dropout: float = 0.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
        freeze: bool = False,
    ) -> NumpyGRU:
        """Build a GRU from block-layout arrays.

        ``D``, ``H`` and ``I`` are inferred from ``w0``'s shape and ``L`` from
        ``num_layers``, else ``1 + len(w)``.

        Args:
            w0: ``(D, H, 3*I + 3*H)``.
            w: ``(L-1, D, H, 3*D*H + 3*H)``, or ``None`` for one layer.
            b0: ``(D, H, 6)``: input-side biases of ``r, z, n``, then recurrent-side.
            b: ``(L-1, D, H, 6)``.
            num_layers: checked against ``w`` when given.
            gates: gate order used in the arrays (a permutation of ``"rzn"``).
            rowwise: read blocks as the original row loop did.
            bias: ``None``: biases exist exactly when ``b0`` is given; ``True``
                without ``b0``: zero biases; ``False`` with ``b0``: an error.
            batch_first: as in ``nn.GRU``.
            dropout: as in ``nn.GRU``.
            device: build directly on this device (no CPU detour for the module).
            dtype: parameter dtype; ``torch.get_default_dtype()`` when ``None``,
                whatever the numpy dtype.
            freeze: turn ``requires_grad`` off.

        Returns:
            A new ``NumpyGRU``.

        Raises:
            LayoutError: shapes do not fit together, or values are not finite.
            TypeError: an array is not floating point.
        """
        return cls._from_blocks("GRU", dict(w0=w0, w=w, b0=b0, b=b), num_layers=num_layers, gates=gates,
                                rowwise=rowwise, bias=bias, batch_first=batch_first, dropout=dropout,
                                device=device, dtype=dtype, freeze=freeze)


class NumpyLSTM(_NumpyMixin, nn.LSTM):
    r"""``torch.nn.LSTM`` with numpy constructors; identical in every other respect.

    Gates in torch order ``i, f, g, o``; with ``proj_size = P > 0`` the hidden
    state is ``h = W_hr (o * tanh(c))`` and the recurrent width ``R`` is ``P``.
    """

    _mode = "LSTM"

    @classmethod
    def from_numpy(
        cls,
        w0: ArrayLike,
        w: ArrayLike | None = None,
        *,
        b0: ArrayLike | None = None,
        b: ArrayLike | None = None,
        proj: ArrayLike | None = None,
        num_layers: int | None = None,
        gates: str | None = None,
        rowwise: bool = False,
        bias: bool | None = None,
        batch_first: bool = False,
        dropout: float = 0.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
        freeze: bool = False,
    ) -> NumpyLSTM:
        """Build an LSTM from block-layout arrays.

        Args:
            w0: ``(D, H, 4*I + 4*R)``.
            w: ``(L-1, D, H, 4*D*R + 4*R)``, or ``None`` for one layer.
            b0: ``(D, H, 8)``: input-side biases of ``i, f, g, o``, then recurrent-side.
            b: ``(L-1, D, H, 8)``.
            proj: ``(L, D, P, H)``: ``weight_hr`` per layer and direction; gives
                ``proj_size = P``.
            num_layers, gates, rowwise, bias, batch_first, dropout, device, dtype, freeze:
                as in :meth:`NumpyGRU.from_numpy`.

        Returns:
            A new ``NumpyLSTM``.

        Raises:
            LayoutError: shapes do not fit together, or values are not finite.
            TypeError: an array is not floating point.
        """
        return cls._from_blocks("LSTM", dict(w0=w0, w=w, b0=b0, b=b, proj=proj), num_layers=num_layers,
                                gates=gates, rowwise=rowwise, bias=bias, batch_first=batch_first,
                                dropout=dropout, device=device, dtype=dtype, freeze=freeze)


class NumpyRNN(_NumpyMixin, nn.RNN):
    r"""``torch.nn.RNN`` with numpy constructors; identical in every other respect.

    One gate: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with ``act`` tanh or relu.
    A foreign source may pick ``relu`` (Keras ``activation="relu"``); ``tanh`` is the default.
    """

    _mode = "RNN_TANH"

    @classmethod
    def from_numpy(
        cls,
        w0: ArrayLike,
        w: ArrayLike | None = None,
        *,
        b0: ArrayLike | None = None,
        b: ArrayLike | None = None,
        num_layers: int | None = None,
        gates: str | None = None,
        rowwise: bool = False,
        bias: bool | None = None,
        batch_first: bool = False,
        dropout: float = 0.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
        freeze: bool = False,
        nonlinearity: str = "tanh",
    ) -> NumpyRNN:
        """Build an Elman RNN from block-layout arrays.

        Args:
            w0: ``(D, H, I + H)``.
            w: ``(L-1, D, H, D*H + H)``, or ``None`` for one layer.
            b0: ``(D, H, 2)``: input-side then recurrent-side bias.
            b: ``(L-1, D, H, 2)``.
            nonlinearity: ``"tanh"`` or ``"relu"``.
            num_layers, gates, rowwise, bias, batch_first, dropout, device, dtype, freeze:
                as in :meth:`NumpyGRU.from_numpy`.

        Returns:
            A new ``NumpyRNN``.

        Raises:
            LayoutError: shapes do not fit together, or values are not finite.
            TypeError: an array is not floating point.
            ValueError: unknown ``nonlinearity``.
        """
        mode = _rnn_mode(nonlinearity)
        return cls._from_blocks(mode, dict(w0=w0, w=w, b0=b0, b=b), num_layers=num_layers, gates=gates,
                                rowwise=rowwise, bias=bias, batch_first=batch_first, dropout=dropout,
                                device=device, dtype=dtype, freeze=freeze)


def _rnn_mode(nonlinearity: str) -> str:
    if nonlinearity == "tanh":
        return "RNN_TANH"
    if nonlinearity == "relu":
        return "RNN_RELU"
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


#: Twin of each torch class, for :func:`numpyrnn.convert` and the layouts.
TWINS: dict[type, type] = {nn.GRU: NumpyGRU, nn.LSTM: NumpyLSTM, nn.RNN: NumpyRNN}
