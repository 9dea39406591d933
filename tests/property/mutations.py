"""Ways to change a valid source: corruptions that must be refused, and awkward
memory layouts that must load exactly. Shared by the property tests and
``fuzz/fuzz_numpyrnn.py``; everything here works on any nested source (see
:mod:`tests.property.cases`)."""

from __future__ import annotations

import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from hypothesis import strategies as st

from numpyrnn import LayoutError

from .cases import leaves, replace

REFUSED = (LayoutError, TypeError)
WRONG_DTYPES = ("int8", "int32", "int64", "uint8", "bool", "complex64", "complex128", "object", "float16", "U3")


@dataclass(frozen=True)
class Corruption:
    """One change to a valid source and what the refusal must say."""

    kind: str
    paths: tuple            # leaf paths involved (one, or two for a swap)
    pattern: str = ""       # regex the message must also match (engine-format layouts)
    numbers: tuple = ()     # numbers the message must mention (expected and received lengths)
    maybe_valid: bool = False  # float16: accepted where the values fit, like any floating dtype


def _axis_changed(rng: np.random.Generator, a: np.ndarray, axis: int, n: int) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] = n
    return (0.4 * rng.standard_normal(shape)).astype(a.dtype)


@st.composite
def corruptions(draw, source):
    """``(corrupted source, Corruption)`` for a valid nested source."""
    found = leaves(source)
    paths = sorted(found, key=repr)
    path = draw(st.sampled_from(paths))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = found[path]
    kinds = ["none", "not_array"]
    if isinstance(a, np.ndarray) and a.dtype.kind in "fiucb":  # an earlier corruption may have left anything
        kinds += ["dtype", "add_axis"]
        if a.ndim:
            kinds += ["axis_length", "drop_axis"]
        if a.size and a.dtype.kind in "fc":
            kinds.append("nonfinite")
        if a.size and a.dtype == np.float32:
            kinds.append("beyond_range")
    arrays = [p for p in paths if isinstance(found[p], np.ndarray)]
    if isinstance(a, np.ndarray) and len({found[p].shape for p in arrays}) > 1:
        kinds.append("swap")
    kind = draw(st.sampled_from(kinds))
    if kind == "axis_length":
        axis = draw(st.integers(0, a.ndim - 1))
        old = a.shape[axis]
        new = draw(st.integers(0, old + 3).filter(lambda n: n != old))
        return replace(source, path, _axis_changed(rng, a, axis, new)), Corruption(
            kind, (path,), rf"axis {axis} \(.*?\) is {new}, expected {old}\b", (old, new))
    if kind == "drop_axis":
        axis = draw(st.integers(0, a.ndim - 1))
        rest = a.shape[:axis] + a.shape[axis + 1:]
        dropped = np.take(a, 0, axis=axis) if a.shape[axis] else np.zeros(rest, a.dtype)
        return replace(source, path, dropped), Corruption(
            kind, (path,), rf"expected {a.ndim} axes .*got {a.ndim - 1} axes", (a.ndim, a.ndim - 1))
    if kind == "add_axis":
        axis = draw(st.integers(0, a.ndim))
        reps = draw(st.integers(1, 3))
        return replace(source, path, np.stack([a] * reps, axis=axis)), Corruption(
            kind, (path,), rf"expected {a.ndim} axes .*got {a.ndim + 1} axes", (a.ndim, a.ndim + 1))
    if kind == "swap":
        other = draw(st.sampled_from([p for p in arrays if found[p].shape != a.shape]))
        swapped = replace(replace(source, path, found[other]), other, a)
        return swapped, Corruption(kind, (path, other))
    if kind == "dtype":
        dtype = draw(st.sampled_from(WRONG_DTYPES))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # complex -> real and float -> int casts warn; the casts are the point
            value = a.astype(dtype)
        return replace(source, path, value), Corruption(kind, (path,), r"dtype", maybe_valid=dtype == "float16")
    if kind == "nonfinite":
        flat = draw(st.integers(0, a.size - 1))
        idx = np.unravel_index(flat, a.shape)
        bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        value = a.copy()
        value[idx] = bad
        where = re.escape(str([int(i) for i in idx]))
        return replace(source, path, value), Corruption(kind, (path,), rf"holds {bad} at index {where}")
    if kind == "beyond_range":  # finite float64 that a float32 module cannot hold
        flat = draw(st.integers(0, a.size - 1))
        idx = np.unravel_index(flat, a.shape)
        value = a.astype(np.float64)
        value[idx] = draw(st.sampled_from([1e300, -1e300, 3.5e38, -np.finfo(np.float64).max]))
        where = re.escape(str([int(i) for i in idx]))
        return replace(source, path, value), Corruption(kind, (path,), rf"at index {where}, beyond the largest float32")
    if kind == "none":
        return replace(source, path, None), Corruption(kind, (path,))
    junk = draw(st.sampled_from(["w0", {"a": 1}, [[1.0], [1.0, 2.0]], object(), b"\x00\x01", [None, None]]))
    return replace(source, path, junk), Corruption(kind, (path,))



# A transform returns an awkward array with the same shape and a function that
# changes the memory behind it (through the view, its base, or its file).
Transform = Callable[[np.ndarray, Path], tuple]


def _readonly(a, tmp):
    b = a.copy()
    b.flags.writeable = False

    def mutate():
        b.flags.writeable = True
        b[...] += 1
    return b, mutate


def _npy_mmap(mode):
    def make(a, tmp):
        path = tmp / f"{uuid.uuid4().hex}.npy"
        np.save(path, a)
        view = np.load(path, mmap_mode=mode)

        def mutate():
            other = np.load(path, mmap_mode="r+")
            other[...] += 1
            other.flush()
            if mode == "c":
                view[...] += 1
        return view, mutate
    return make


def _raw_memmap(a, tmp):
    path = tmp / f"{uuid.uuid4().hex}.bin"
    m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    del m
    view = np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)

    def mutate():
        other = np.memmap(path, dtype=a.dtype, mode="r+", shape=a.shape)
        other[...] += 1
        other.flush()
    return view, mutate


def _fortran(a, tmp):
    b = np.asfortranarray(a)
    return b, lambda: b.__setitem__(..., b + 1)


def _flipped(a, tmp):
    base = np.flip(a).copy()
    view = np.flip(base)  # negative strides on every axis, size-1 axes included
    return view, lambda: base.__setitem__(..., base + 1)


def _flipped_readonly(a, tmp):
    view, mutate = _flipped(a, tmp)
    view.flags.writeable = False
    return view, mutate


def _size1_negative(a, tmp):
    """Negative strides on the size-1 axes only (any axis if there is none): the case
    ``np.ascontiguousarray`` may leave alone."""
    base = a.copy()
    axes = tuple(i for i, n in enumerate(a.shape) if n == 1) or (0,)
    view = np.flip(np.flip(base, axis=axes).copy(), axis=axes)
    base = view.base
    return view, lambda: base.__setitem__(..., base + 1)


def _byteswapped(a, tmp):
    b = a.astype(a.dtype.newbyteorder("S"))
    return b, lambda: b.__setitem__(..., b + 1)


def _strided(a, tmp):
    big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
    view = big[(slice(None, None, 2),) * a.ndim]
    view[...] = a
    return view, lambda: big.__setitem__(..., big + 1)


def _transposed(a, tmp):
    order = tuple(range(a.ndim))[::-1]
    base = np.ascontiguousarray(a.transpose(order))
    return base.transpose(order), lambda: base.__setitem__(..., base + 1)


def _broadcast(a, tmp):
    base = a[..., :1].copy()
    return np.broadcast_to(base, a.shape), lambda: base.__setitem__(..., base + 1)


def _torch_view(a, tmp):
    order = tuple(range(a.ndim))[::-1]
    base = torch.from_numpy(np.ascontiguousarray(a.transpose(order)))
    return base.permute(*order), lambda: base.add_(1)


TRANSFORMS: dict[str, Transform] = {
    "readonly": _readonly,
    "mmap_r": _npy_mmap("r"),
    "mmap_c": _npy_mmap("c"),
    "memmap_r": _raw_memmap,
    "fortran": _fortran,
    "flipped": _flipped,
    "flipped_readonly": _flipped_readonly,
    "size1_negative_stride": _size1_negative,
    "byteswapped": _byteswapped,
    "strided": _strided,
    "transposed": _transposed,
    "broadcast": _broadcast,
    "torch_view": _torch_view,
}

