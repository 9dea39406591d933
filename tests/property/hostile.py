"""Generated hostile files and what numpyrnn must do with each: shared by the property tests and the fuzzer.

* :func:`h5_cases`: a one-GRU ``.weights.h5`` (bare, or inside a ``.keras``)
  whose variable is stored in any of HDF5's ways, with any filter chain and
  compression level. Data inside the file reads back exactly; data anywhere
  else is refused naming the dataset; nothing else may escape. The ``sparse``
  kind is a compression bomb of any degree: a gzip kernel that declares up to
  16384 rows and stores only its first chunks, read under any limits; it is
  refused exactly when it declares more than ``floor`` bytes and more than
  ``ratio`` times what it stores, and otherwise reads as its rows and zeros.
* :func:`zip_cases`: an ``.npz`` member, or a ``.keras`` archive's
  ``model.weights.h5``, compressed to any ratio from 1 to about 1000, read
  under any limits. It is refused exactly when it declares more than
  ``floor`` bytes and more than ``ratio`` times what it stores.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from numpyrnn import LayoutError, files, safeio
from tests.hostile_files import INSIDE, OUTSIDE, keras_archive, write_h5

H5_FILTERS = ("none", "gzip", "lzf", "shuffle_gzip", "fletcher32_gzip", "shuffle_lzf")


@st.composite
def h5_cases(draw) -> dict:
    return dict(
        kind=draw(st.sampled_from(INSIDE + OUTSIDE + ("filtered", "sparse"))),
        var=draw(st.integers(0, 2)),
        seed=draw(st.integers(0, 2**16)),
        archive=draw(st.booleans()),
        filters=draw(st.sampled_from(H5_FILTERS)),
        level=draw(st.integers(0, 9)),
        chunk_rows=draw(st.integers(1, 4)),
        rows=draw(st.integers(1, 1 << 14)),
        written=draw(st.integers(0, 8)),
        floor=draw(st.sampled_from([0, 1 << 10, 1 << 16]) | st.integers(0, 1 << 20)),
        ratio=draw(st.sampled_from([1.0, 10.0, 100.0]) | st.floats(1, 1000)),
    )


SPARSE_CHUNK = 16


def _write_sparse(path: Path, case: dict) -> tuple[list[np.ndarray], int, int]:
    """A GRU whose gzip kernel declares ``rows`` rows and stores only its first ``written`` chunks.

    Returns the values it reads as (unwritten chunks are HDF5's fill value,
    zeros), and the kernel's declared and stored bytes.
    """
    import h5py

    from tests.hostile_files import gru_vars

    values = gru_vars(case["seed"])
    rows = case["rows"]
    kernel = np.zeros((rows, values[0].shape[1]), np.float32)
    n = min(rows, case["written"] * SPARSE_CHUNK)
    kernel[:n] = np.random.default_rng(case["seed"]).standard_normal((n, kernel.shape[1])).astype(np.float32)
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/gru/cell/vars")
        ds = g.create_dataset("0", shape=kernel.shape, dtype=np.float32, compression="gzip",
                              compression_opts=max(case["level"], 1),
                              chunks=(min(SPARSE_CHUNK, rows), kernel.shape[1]))
        if n:
            ds[:n] = kernel[:n]
        g.create_dataset("1", data=values[1])
        g.create_dataset("2", data=values[2])
        stored = int(ds.id.get_storage_size())
    return [kernel, values[1], values[2]], kernel.nbytes, stored


def check_sparse_case(case: dict, folder: Path) -> None:
    """Raise ``AssertionError`` unless a sparse gzip kernel is refused exactly when the limits say so."""
    path = folder / "m.weights.h5"
    values, declared, stored = _write_sparse(path, case)
    lim = safeio.Limits(ratio=case.get("ratio", 100.0), floor=case.get("floor", 0))
    bomb = declared > lim.floor and declared > lim.ratio * stored
    try:
        with safeio.limits(lim):
            got, _ = files.read_keras(path)
    except LayoutError as exc:
        text = str(exc)
        assert bomb, f"{case}: {declared} bytes from {stored} refused under {lim}: {text}"
        assert text.startswith("m.weights.h5: layers/gru/cell/vars/0: declares ") and "--limit ratio=" in text, text
        return
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        raise AssertionError(f"{case}: {type(exc).__name__} escaped: {exc}") from exc
    assert not bomb, f"{case}: a dataset declaring {declared} bytes from {stored} was read under {lim}"
    for a, b in zip(got[0], values):
        np.testing.assert_array_equal(a, b)


def _write_filtered(path: Path, case: dict) -> list[np.ndarray]:
    """Every variable through one filter chain (chunked), values exactly representable."""
    import h5py

    from tests.hostile_files import gru_vars

    values = gru_vars(case["seed"])
    f_ = case["filters"]
    opts: dict[str, Any] = {}
    if "gzip" in f_:
        opts.update(compression="gzip", compression_opts=case["level"])
    if "lzf" in f_:
        opts.update(compression="lzf")
    if "shuffle" in f_:
        opts["shuffle"] = True
    if "fletcher32" in f_:
        opts["fletcher32"] = True
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/gru/cell/vars")
        for j, v in enumerate(values):
            g.create_dataset(str(j), data=v, chunks=(min(case["chunk_rows"], v.shape[0]), v.shape[1]), **opts)
    return values


def check_h5_case(case: dict, folder: Path) -> None:
    """Raise ``AssertionError`` unless numpyrnn reads inside data exactly and refuses data elsewhere."""
    path = folder / "m.weights.h5"
    if case["kind"] == "sparse":
        check_sparse_case(case, folder)
        return
    if case["kind"] == "filtered":
        values = _write_filtered(path, case)
    else:
        values = write_h5(path, case["kind"], case["var"], case["seed"], outside=folder / "other.h5")
    src = path
    if case["archive"]:
        src = folder / "m.keras"
        keras_archive(src, path.read_bytes())
    try:
        got, _ = files.read_keras(src)
    except LayoutError as exc:
        text = str(exc)
        assert case["kind"] in OUTSIDE, f"{case}: data inside the file was refused: {text}"
        assert text.startswith(f"{src.name}: "), text
        assert "vars/" in text, f"the message does not name the dataset: {text}"
        return
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        raise AssertionError(f"{case}: {type(exc).__name__} escaped: {exc}") from exc
    assert case["kind"] not in OUTSIDE, f"{case}: data stored outside the file was read"
    assert len(got) == 1 and len(got[0]) == 3
    for a, b in zip(got[0], values):
        np.testing.assert_array_equal(a, b)


@st.composite
def zip_cases(draw) -> dict:
    return dict(
        container=draw(st.sampled_from(["npz", "keras"])),
        size=draw(st.integers(1 << 10, 1 << 21)),
        random=draw(st.sampled_from([0.0, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0]) | st.floats(0, 1)),
        level=draw(st.integers(1, 9)),
        floor=draw(st.integers(0, 1 << 21)),
        ratio=draw(st.sampled_from([1.0, 2.0, 10.0, 100.0, 1000.0]) | st.floats(1, 2000)),
        seed=draw(st.integers(0, 2**16)),
    )


def _payload(case: dict) -> bytes:
    """``size`` bytes: a random fraction, then zeros (the ratio follows the fraction)."""
    n = case["size"]
    k = int(n * case["random"])
    rng = np.random.default_rng(case["seed"])
    return rng.integers(0, 256, k, dtype=np.uint8).tobytes() + b"\0" * (n - k)


def check_zip_case(case: dict, folder: Path) -> None:
    """Raise ``AssertionError`` unless the member is refused exactly when the limits say so."""
    lim = safeio.Limits(ratio=case["ratio"], floor=case["floor"])
    payload = _payload(case)
    if case["container"] == "npz":
        arr = np.frombuffer(payload[: len(payload) // 4 * 4], dtype=np.uint8).view(np.float32).copy()
        arr[~np.isfinite(arr)] = 0
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr)
        data, name, src = buf.getvalue(), "w0.npy", folder / "w.npz"
    else:
        import h5py

        arr = np.frombuffer(payload[: len(payload) // 4 * 4], dtype=np.float32).copy()
        arr[~np.isfinite(arr)] = 0
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            g = f.create_group("layers/gru/cell/vars")
            g.create_dataset("0", data=arr.reshape(-1, 1))
        data, name, src = buf.getvalue(), "model.weights.h5", folder / "m.keras"
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=case["level"]) as zf:
        zf.writestr(name, data)
    info = zipfile.ZipFile(src).getinfo(name)
    bomb = info.file_size > lim.floor and info.file_size > lim.ratio * info.compress_size
    try:
        with safeio.limits(lim):
            got = files.read_npz(src)["w0"] if case["container"] == "npz" else files.read_keras(src)[0][0][0]
    except LayoutError as exc:
        text = str(exc)
        if "inflates to" in text:
            assert bomb, f"{case}: refused as a bomb at {info.file_size}/{info.compress_size}: {text}"
            assert text.startswith(f"{src.name}[") and "--limit ratio=" in text, text
            return
        # the h5 inside may itself be refused by the same rule, or not hold a recurrent layer
        assert case["container"] == "keras" and not bomb, f"{case}: {text}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{case}: {type(exc).__name__} escaped: {exc}") from exc
    assert not bomb, f"{case}: a member of {info.file_size} bytes from {info.compress_size} was inflated"
    np.testing.assert_array_equal(np.asarray(got).reshape(-1), arr)
