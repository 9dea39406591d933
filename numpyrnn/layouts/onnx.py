r"""ONNX ``GRU``, ``LSTM`` and ``RNN`` operator weights.

Each ONNX recurrent node is one layer. Shape symbols as in :mod:`numpyrnn.spec`
(``G`` gates, ``D`` directions, ``H`` hidden, ``I`` input of the layer):

=====  ===============  =================================================  ==============================
array  shape            meaning                                            torch
=====  ===============  =================================================  ==============================
``W``  ``[D, G*H, I]``  input weights, gate blocks stacked along axis 1    ``weight_ih_l{k}[_reverse]``
``R``  ``[D, G*H, H]``  recurrent weights                                  ``weight_hh_l{k}[_reverse]``
``B``  ``[D, 2*G*H]``   ``[Wb, Rb]``: input-side then recurrent-side bias  ``bias_ih``, ``bias_hh``
=====  ===============  =================================================  ==============================

Direction 0 is forward and 1 backward, as in torch. The gate blocks are in
ONNX's order: GRU ``z, r, h`` and LSTM ``i, o, f, c`` (torch ``r, z, n`` and
``i, f, g, o``). The blocks are already ``(G*H, in)`` like torch, so each is
only split into gates (einops ``"(g h) i -> g h i"``) and reordered; nothing is
transposed. ``B`` is optional; ONNX reads a missing ``B`` as zeros.

ONNX's ``layout`` attribute (opset 14) changes only ``X``, ``Y`` and the
initial states, never ``W``, ``R`` or ``B``; ``sequence_lens`` and the initial
states are run-time inputs. Neither matters for the weights.

What torch cannot compute is refused (see :attr:`OnnxLayout.refuses`):
``linear_before_reset=0`` (ONNX's GRU default), peepholes ``P``, ``clip``,
``input_forget=1``, activations other than torch's, ``direction="reverse"``,
and, on export, LSTM projections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LayoutError
from ..spec import RNNSpec
from ._paths import as_mapping, at, check_keys, check_shape, is_sequence, leaf
from .base import Axis, Layout, Piece

__all__ = ["OnnxLayout", "ONNX"]

#: torch parameter <- ONNX array, which half of it (``B`` holds two), einops pattern to ``g h [x]``.
MAPPING = (
    ("weight_ih", "W", None, "(g h) i -> g h i"),
    ("weight_hh", "R", None, "(g h) j -> g h j"),
    ("bias_ih", "B", 0, "(g h) -> g h"),
    ("bias_hh", "B", 1, "(g h) -> g h"),
)

#: Per-direction ``activations`` torch can compute, lower case, -> torch mode.
ACTIVATIONS: dict[str, dict[tuple[str, ...], str]] = {
    "GRU": {("sigmoid", "tanh"): "GRU"},
    "LSTM": {("sigmoid", "tanh", "tanh"): "LSTM"},
    "RNN": {("tanh",): "RNN_TANH", ("relu",): "RNN_RELU"},
}

#: Inputs of the ONNX recurrent ops, by position.
INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")

#: Ops allowed between two stacked recurrent nodes: they only move ``Y`` into ``X``.
RESHAPING = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout"})


@dataclass
class _Node:
    """One layer as found in the source: arrays by ONNX name, and their key paths."""

    arrays: dict[str, Any]
    paths: dict[str, str]
    mode: str
    where: str
    hidden_size: int | None = None
    directions: int | None = None


def _key(layer: int, name: str) -> str:
    return f'source[{layer}]["{name}"]'


class OnnxLayout(Layout):
    """ONNX recurrent operators: ``W``/``R``/``B`` per layer (see the module docstring)."""

    name = "ONNX"
    gates = {"GRU": "zrn", "LSTM": "iofg", "RNN": "h"}
    refuses = {
        "linear_before_reset": (
            "ONNX's GRU default linear_before_reset=0 applies the reset gate before the recurrent matmul, "
            "h~ = tanh(W x + R (r * h) + ...), while nn.GRU computes tanh(W x + Wb + r * (R h + Rb)); no choice "
            "of weights makes them equal. Only linear_before_reset=1 (what torch.onnx and keras2onnx with "
            "reset_after=True write) can be converted"
        ),
        "P": "peepholes (input P) feed the cell state into the i, o and f gates; nn.LSTM has no peepholes",
        "clip": "clip bounds the gate pre-activations to [-clip, clip]; torch's recurrent modules never clip",
        "input_forget": "input_forget=1 couples the input and forget gates; nn.LSTM keeps them independent",
        "activations": "torch's recurrent modules have fixed activations",
        "direction": (
            'direction="reverse" runs one direction backwards in time, which nn.GRU/LSTM/RNN cannot do; '
            "flip the time axis of X (and Y) around a forward module instead"
        ),
        "proj_size": (
            "an ONNX LSTM has no projection (torch's weight_hr, proj_size > 0), so this module has no ONNX form"
        ),
        "linear_before_reset_other": "linear_before_reset is an attribute of the ONNX GRU only",
    }

    # -- declarations ---------------------------------------------------------------
    def shapes(self, spec: RNNSpec, **_: Any) -> dict[str, Sequence[Axis]]:
        self._representable(spec)
        G, D, H = spec.gates, spec.directions, spec.hidden_size
        dirs, gh = Axis("directions", D), Axis(f"{G}*hidden" if G > 1 else "hidden", G * H)
        shapes: dict[str, Sequence[Axis]] = {}
        for k in range(spec.num_layers):
            width = Axis("input" if k == 0 else f"{D}*hidden" if D > 1 else "hidden", spec.layer_input(k))
            shapes[_key(k, "W")] = (dirs, gh, width)
            shapes[_key(k, "R")] = (dirs, gh, Axis("hidden", H))
            if spec.bias:
                shapes[_key(k, "B")] = (dirs, Axis(f"2*{G}*hidden" if G > 1 else "2*hidden", 2 * G * H))
        return shapes

    def pieces(self, spec: RNNSpec, **_: Any) -> list[Piece]:
        self._representable(spec)
        GH = spec.gates * spec.hidden_size
        order = self.gates[spec.cell]
        out = []
        for layer, d in spec.units():
            for param, array, half, pattern in MAPPING:
                if array == "B" and not spec.bias:
                    continue
                index = (d,) if half is None else (d, slice(half * GH, (half + 1) * GH))
                out.append(Piece(param + spec.suffix(layer, d), _key(layer, array), index, pattern,
                                 {"g": spec.gates}, order))
        return out

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, **_: Any) -> list[dict[str, Any]]:
        names = ("W", "R", "B") if spec.bias else ("W", "R")
        return [{n: arrays[_key(k, n)] for n in names} for k in range(spec.num_layers)]

    def _representable(self, spec: RNNSpec) -> None:
        if spec.proj_size:
            raise LayoutError(f"proj_size={spec.proj_size}: {self.refuses['proj_size']}")

    # -- structure ------------------------------------------------------------------
    def infer(self, source: Any, *, mode: str, linear_before_reset: int | None = None,
              variants: Any = None, **_: Any) -> tuple[RNNSpec, dict[str, Any]]:
        """Read a mapping, a list of mappings or an ``onnx.ModelProto``; check every key and shape.

        Raises:
            LayoutError: a refused attribute or input, a missing or unexpected key, or a shape
                that does not fit (the message names the key path or the node).
            TypeError: ``source`` is none of the accepted structures, or an array is not floating point.
        """
        cell = "RNN" if mode.startswith("RNN") else mode
        if _is_model(source):
            nodes = self._read_model(source, cell, linear_before_reset, variants)
        else:
            nodes = self._read_arrays(source, cell, linear_before_reset, mode, variants)
        spec = self._spec(nodes, cell)
        shapes = self.shapes(spec)
        leaves = {}
        for k, node in enumerate(nodes):
            for name in ("W", "R", "B"):
                key = _key(k, name)
                if key not in shapes:
                    continue
                check_shape(node.paths[name], node.arrays[name], shapes[key], layout=self.name,
                            hint=self._shape_hint(name, node.arrays[name], spec))
                leaves[key] = node.arrays[name]
        return spec, leaves

    def _spec(self, nodes: list[_Node], cell: str) -> RNNSpec:
        first = nodes[0]
        for name, axes in (("W", "(directions, G*hidden, input)"), ("R", "(directions, G*hidden, hidden)")):
            arr = first.arrays[name]
            if arr.ndim != 3:
                raise LayoutError(f"{first.paths[name]}: expected 3 axes {axes}, got {arr.ndim} axes {tuple(arr.shape)}")
        D, _, I = (int(n) for n in first.arrays["W"].shape)
        H = int(first.arrays["R"].shape[2])
        if D not in (1, 2):
            raise LayoutError(f"{first.paths['W']}: axis 0 (directions) must be 1 or 2, got {D}")
        G, rows = len(self.gates[cell]), int(first.arrays["R"].shape[1])
        if rows == first.arrays["W"].shape[1] and rows != G * H:
            fits = {3: "GRU", 4: "LSTM", 1: "RNN"}.get(rows // H) if rows % H == 0 else None
            raise LayoutError(
                f"{first.paths['R']}: axis 1 ({G}*hidden) is {rows}, but axis 2 (hidden) is {H}; "
                + (f"{rows} = {rows // H}*hidden fits an ONNX {fits}: use Numpy{fits}.from_onnx" if fits else
                   "the recurrent width must be the hidden size (ONNX's recurrent ops have no projection)")
            )
        if H < 1 or I < 1:
            raise LayoutError(f"{first.paths['W']}: empty weights of shape {tuple(first.arrays['W'].shape)}")
        has_b = ["B" in n.arrays for n in nodes]
        if any(has_b) and not all(has_b):
            k = has_b.index(False)
            raise LayoutError(
                f"{nodes[k].where}: has no B while {nodes[has_b.index(True)].where} has one; a torch module has "
                f"biases in every layer or in none: pass zeros of shape (directions={D}, {2 * len(self.gates[cell])}*hidden) for B"
            )
        modes = {n.mode for n in nodes}
        if len(modes) > 1:
            raise LayoutError(f"{nodes[-1].where}: activations differ between layers ({sorted(modes)}); "
                              f"nn.RNN has one nonlinearity for all layers")
        for n in nodes:
            if n.hidden_size is not None and n.hidden_size != H:
                raise LayoutError(f"{n.where}: hidden_size={n.hidden_size}, but {first.paths['R']} has hidden={H} "
                                  f"(axis 2); torch modules have one hidden size for all layers")
            if n.directions is not None and n.directions != D:
                raise LayoutError(f"{n.where}: direction says {n.directions} direction(s), but {first.paths['W']} "
                                  f"has {D} along axis 0; torch modules are bidirectional in every layer or none")
        return RNNSpec(mode=modes.pop(), input_size=I, hidden_size=H, num_layers=len(nodes),
                       bidirectional=D == 2, bias=all(has_b))

    def _shape_hint(self, name: str, arr: Any, spec: RNNSpec) -> str:
        H, G = spec.hidden_size, spec.gates
        got = tuple(arr.shape)
        if name in ("W", "R") and len(got) == 3 and got[1] != G * H and got[1] % H == 0:
            other = {3: "GRU", 4: "LSTM", 1: "RNN"}.get(got[1] // H)
            if other:
                return f"{got[1]} = {got[1] // H}*hidden fits an ONNX {other}: use Numpy{other}.from_onnx"
        if name == "B" and len(got) == 2 and got[1] == G * H:
            return f"B holds the W-side biases then the R-side biases, 2*{G}*hidden; pad the R side with zeros"
        if name == "W" and len(got) == 3 and got[0] == spec.directions and got[1] == G * H:
            return "axis 2 is the layer's input width: the layer below's directions*hidden for a stacked layer"
        return ""

    def _read_arrays(self, source: Any, cell: str, linear_before_reset: int | None, mode: str,
                     variants: Any = None) -> list[_Node]:
        if isinstance(source, Mapping):
            items = [("source", source)]
        elif is_sequence(source):
            if not source:
                raise LayoutError("source: an empty list; pass one {'W', 'R', 'B'} mapping per layer, bottom first")
            items = [(at("source", k), m) for k, m in enumerate(source)]
        else:
            raise TypeError(
                "source: expected a mapping with 'W', 'R' and optionally 'B', a list of such mappings "
                f"(bottom layer first) or an onnx.ModelProto, got {type(source).__name__}"
            )
        _check_lbr(self, cell, linear_before_reset, given_by="linear_before_reset", arrays=True, variants=variants)
        nodes = []
        for path, m in items:
            m = as_mapping(m, path, "a mapping with 'W', 'R' and optionally 'B'")
            m = {k: v for k, v in m.items() if v is not None}
            peep = variants is not None and cell == "LSTM"
            check_keys(m, path, required=("W", "R"), optional=("B", "P") if peep else ("B",),
                       what=f"an ONNX {cell} layer", refused={} if peep else {"P": self.refuses["P"]})
            if "P" in m:
                variants.note(path, "P", (leaf(m.pop("P"), at(path, "P")), at(path, "P")))
            arrays = {k: leaf(v, at(path, k)) for k, v in m.items()}
            nodes.append(_Node(arrays, {k: at(path, k) for k in ("W", "R", "B")},
                               mode=mode, where=path))  # arrays record no activation: the caller's
        return nodes

    def _read_model(self, model: Any, cell: str, linear_before_reset: int | None, variants: Any = None) -> list[_Node]:
        from onnx import helper, numpy_helper  # only ever for a ModelProto

        graph = model.graph
        recurrent = [n for n in graph.node if n.op_type in self.gates and n.domain in ("", "ai.onnx")]
        if not recurrent:
            ops = sorted({n.op_type for n in graph.node})
            unrolled = "; its recurrence may be unrolled into MatMul ops (torch.onnx's dynamo exporter does this for nn.RNN), which numpyrnn does not read: export with dynamo=False, or pass the weights as arrays" if "MatMul" in ops else ""
            raise LayoutError(f"source: the model has no GRU, LSTM or RNN node (it has {', '.join(ops) or 'no nodes'}){unrolled}")
        for n in recurrent:
            if n.op_type != cell:
                raise LayoutError(f"{_where(n)}: an ONNX {n.op_type}; Numpy{cell}.from_onnx reads {cell} nodes"
                                  + (f": use Numpy{n.op_type}.from_onnx" if len({m.op_type for m in recurrent}) == 1
                                     else "; this model mixes cell types: pass each stack's W, R, B as arrays"))
        _check_chain(graph, recurrent)
        initializers = {t.name: t for t in graph.initializer}
        nodes = []
        for n in recurrent:
            where = _where(n)
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            attrs = {k: _text(v, f"{where} attribute {k}") for k, v in attrs.items()}
            mode = self._check_attributes(where, cell, attrs, linear_before_reset, variants)
            inputs = dict(zip(INPUTS, n.input))
            if inputs.get("P") and variants is not None and inputs["P"] in initializers:
                p_path = f'{where} input P (initializer "{inputs["P"]}")'
                variants.note(where, "P", (leaf(numpy_helper.to_array(initializers[inputs["P"]]), p_path), p_path))
            elif inputs.get("P"):
                raise LayoutError(f'{where} input P ("{inputs["P"]}"): {self.refuses["P"]}')
            arrays, paths = {}, {}
            for name in ("W", "R", "B"):
                tensor = inputs.get(name, "")
                if not tensor:
                    continue
                paths[name] = f'{where} input {name} (initializer "{tensor}")'
                if tensor not in initializers:
                    raise LayoutError(
                        f'{where} input {name} ("{tensor}"): not an initializer of the graph; numpyrnn reads weights '
                        f"stored in graph.initializer: pass computed or fed weights as arrays instead"
                    )
                arrays[name] = leaf(numpy_helper.to_array(initializers[tensor]), paths[name])
            for name, what in (("W", "input weights"), ("R", "recurrent weights")):
                if name not in arrays:
                    raise LayoutError(f"{where}: has no input {name} (the {what}), which ONNX's {n.op_type} requires; "
                                      f"the model is damaged or incomplete")
            directions = {"forward": 1, "reverse": 1, "bidirectional": 2}[attrs.get("direction", "forward")]
            nodes.append(_Node(arrays, paths, mode=mode, where=where, hidden_size=attrs.get("hidden_size"),
                               directions=directions))
        return nodes

    def _check_attributes(self, where: str, cell: str, attrs: dict[str, Any], linear_before_reset: int | None,
                          variants: Any = None) -> str:
        """The torch mode of one node, or a LayoutError for what torch cannot compute.

        With ``variants`` (a :class:`numpyrnn.variants.loading.Found`) what only a
        variant module computes is noted there instead of refused.
        """
        vary = variants is not None and cell != "RNN"
        if "clip" in attrs and vary:
            variants.note(where, "clip", attrs["clip"])
        elif "clip" in attrs:
            raise LayoutError(f"{where}: clip={attrs['clip']}: {self.refuses['clip']}")
        if attrs.get("input_forget", 0) and vary:
            variants.note(where, "input_forget", attrs["input_forget"])
        elif attrs.get("input_forget", 0):
            raise LayoutError(f"{where}: input_forget={attrs['input_forget']}: {self.refuses['input_forget']}")
        direction = attrs.get("direction", "forward")
        if direction == "reverse" and vary:
            variants.note(where, "direction", "reverse")
        elif direction == "reverse":
            raise LayoutError(f"{where}: {self.refuses['direction']}")
        if direction not in ("forward", "bidirectional", "reverse"):
            raise LayoutError(f'{where}: direction="{direction}" is not an ONNX direction')
        if cell == "GRU":
            lbr = attrs.get("linear_before_reset", 0)
            if linear_before_reset is not None and linear_before_reset != lbr:
                raise LayoutError(f"{where}: linear_before_reset={linear_before_reset} was passed, but the node has "
                                  f"linear_before_reset={lbr}{'' if 'linear_before_reset' in attrs else ' (the default)'}; "
                                  "leave it out for a model: the node says what it computes")
            _check_lbr(self, cell, lbr, given_by=f"{where}: linear_before_reset", arrays=False,
                       default="linear_before_reset" not in attrs, variants=variants, layer=where)
        elif linear_before_reset is not None:
            _check_lbr(self, cell, linear_before_reset, given_by="linear_before_reset", arrays=False)
        allowed = ACTIVATIONS[cell]
        default = next(iter(allowed))
        per_direction = len(default)
        acts = [str(a).lower() for a in attrs.get("activations", ())]
        D = 2 if direction == "bidirectional" else 1
        if not acts:
            return allowed[default]
        if len(acts) != per_direction * D:
            raise LayoutError(f"{where}: activations={attrs['activations']} should name {per_direction} per direction "
                              f"({per_direction * D} in all)")
        chunks = [tuple(acts[i:i + per_direction]) for i in range(0, len(acts), per_direction)]
        modes = {allowed.get(c, "") for c in chunks}
        if ("" in modes or len(modes) > 1) and vary:
            variants.note(where, "activations", (chunks, attrs.get("activation_alpha"), attrs.get("activation_beta")))
            return cell
        if "" in modes or len(modes) > 1:
            options = " or ".join(str(list(a)) for a in allowed)
            raise LayoutError(
                f"{where}: activations={attrs['activations']}: {self.refuses['activations']}: an ONNX {cell} "
                f"converts with {options} in every direction"
            )
        return modes.pop()


def _check_lbr(layout: OnnxLayout, cell: str, value: Any, *, given_by: str, arrays: bool, default: bool = False,
               variants: Any = None, layer: str = "*") -> None:
    if cell != "GRU":
        if value is not None:
            raise LayoutError(f"{given_by}={value!r}: {layout.refuses['linear_before_reset_other']}; "
                              f"leave it out for an ONNX {cell}")
        return
    if value is None and arrays:
        raise LayoutError(
            "linear_before_reset: missing; for a GRU given as arrays, state the node's linear_before_reset: "
            f"{layout.refuses['linear_before_reset']}. Pass linear_before_reset=1 if the node has it"
        )
    if isinstance(value, bool) or value not in (0, 1):
        raise LayoutError(f"{given_by}={value!r}: expected 0 or 1 (and only 1 converts)")
    if value == 0 and variants is not None:
        variants.note(layer, "reset_after", False)
    elif value == 0:
        raise LayoutError(f"{given_by}=0{' (the ONNX default)' if default else ''}: "
                          f"{layout.refuses['linear_before_reset']}")


def _text(value: Any, where: str = "an ONNX attribute") -> Any:
    """ONNX string attributes come back as bytes, lists of them as lists of bytes.

    Raises:
        LayoutError: the bytes are not UTF-8 text (a damaged file), naming ``where``.
    """
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise LayoutError(f"{where}: holds bytes that are not UTF-8 text ({exc.reason} at byte {exc.start}); "
                              "the file is damaged") from None
    if isinstance(value, list):
        return [_text(v, where) for v in value]
    return value


def _is_model(source: Any) -> bool:
    """An ``onnx.ModelProto`` (duck-typed, so onnx is imported only for one)."""
    graph = getattr(source, "graph", None)
    return graph is not None and hasattr(graph, "node") and hasattr(graph, "initializer")


def _where(node: Any) -> str:
    if node.name:
        return f'{node.op_type} node "{node.name}"'
    return f"{node.op_type} node writing {node.output[0]!r}" if node.output else f"{node.op_type} node (no name, no output)"


def _check_chain(graph: Any, recurrent: list) -> None:
    """Every recurrent node reads the previous one's ``Y`` through reshaping ops only.

    A bidirectional ``Y`` of ``layout=0`` is ``[T, D, N, H]``; it has to pass a
    ``Transpose(perm=[0, 2, 1, 3])`` before it is flattened to ``[T, N, D*H]``, or the
    directions would be interleaved with the batch.

    Raises:
        LayoutError: the recurrent nodes are not one stack (parallel branches, or some other
            computation between layers that a torch module would not do).
    """
    nodes = list(graph.node)
    consumers: dict[str, list[tuple[int, int]]] = {}
    for j, n in enumerate(nodes):
        for i, name in enumerate(n.input):
            if name:
                consumers.setdefault(name, []).append((j, i))
    position = {id(n): j for j, n in enumerate(nodes)}
    for below, above in zip(recurrent, recurrent[1:]):
        attrs = {a.name: a for a in below.attribute}
        bidirectional = "direction" in attrs and attrs["direction"].s == b"bidirectional"
        needs_swap = bidirectional and not ("layout" in attrs and attrs["layout"].i == 1)
        target = position[id(above)]
        frontier = [(below.output[0], False)] if below.output and below.output[0] else []
        seen: set[tuple[str, bool]] = set()
        reached: set[bool] = set()
        while frontier:
            tensor, swapped = frontier.pop()
            if (tensor, swapped) in seen:
                continue
            seen.add((tensor, swapped))
            for j, i in consumers.get(tensor, ()):
                n = nodes[j]
                if j == target and i == 0:
                    reached.add(swapped)
                elif n.op_type in RESHAPING and i == 0:
                    perm = [list(a.ints) for a in n.attribute if a.name == "perm"]
                    swaps = n.op_type == "Transpose" and perm == [[0, 2, 1, 3]]
                    frontier.extend((o, swapped or swaps) for o in n.output if o)
        if not reached:
            raise LayoutError(
                f"{_where(above)}: does not read {_where(below)}'s output Y through reshaping ops only "
                f"({', '.join(sorted(RESHAPING))}), so the recurrent nodes are not one stacked module; "
                "pass each node's W, R, B as arrays to build separate modules"
            )
        if needs_swap and True not in reached:
            raise LayoutError(
                f"{_where(above)}: reads {_where(below)}'s bidirectional Y [T, D, N, H] without a "
                "Transpose(perm=[0, 2, 1, 3]) before flattening, so its input interleaves directions and batch; "
                "a stacked torch module reads [T, N, D*H]: pass each node's W, R, B as arrays to build separate modules"
            )


ONNX = OnnxLayout()
