"""Hostile weight files, built with the real h5py and zipfile: shared by the tests and the fuzzer.

A Keras 3 ``.weights.h5`` of one GRU layer is ``layers/gru/cell/vars/{0,1,2}``
(kernel, recurrent kernel, bias). :func:`write_h5` writes one where a chosen
variable is stored in a chosen way: every storage layout and filter that
keeps the data inside the file, and every way HDF5 has to put it elsewhere.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

I, H = 3, 4
VAR_SHAPES = ((I, 3 * H), (H, 3 * H), (2, 3 * H))

#: storage kinds whose data is inside the file: they must read back exactly
INSIDE = ("contiguous", "compact", "chunked", "gzip", "gzip9", "lzf", "shuffle_gzip", "fletcher32",
          "scaleoffset", "soft_inside", "hard_twice")
#: storage kinds whose data is elsewhere: they must be refused, naming the dataset
OUTSIDE = ("external", "external_link", "virtual", "soft_outside", "soft_dangling", "soft_to_external_link")


def gru_vars(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in VAR_SHAPES]


def write_h5(path: Path, kind: str = "contiguous", var: int = 0, seed: int = 0,
             outside: Path | None = None) -> list[np.ndarray]:
    """A one-GRU ``.weights.h5`` whose ``var``-th variable is stored as ``kind``; returns the values.

    ``outside`` is the other file that the outside kinds point to (created
    next to ``path`` when not given).
    """
    import h5py

    values = gru_vars(seed)
    outside = outside or path.with_name(path.name + ".outside")
    with h5py.File(path, "w") as f:
        vars_ = f.create_group("layers/gru/cell/vars")
        f.create_group("vars")
        for j, v in enumerate(values):
            name = str(j)
            if j != var or kind == "contiguous":
                vars_.create_dataset(name, data=v)
                continue
            if kind == "compact":
                space = h5py.h5s.create_simple(v.shape)
                plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                plist.set_layout(h5py.h5d.COMPACT)
                dsid = h5py.h5d.create(vars_.id, name.encode(), h5py.h5t.IEEE_F32LE, space, plist)
                dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(v))
            elif kind == "chunked":
                vars_.create_dataset(name, data=v, chunks=(1, v.shape[1]))
            elif kind == "gzip":
                vars_.create_dataset(name, data=v, compression="gzip")
            elif kind == "gzip9":
                vars_.create_dataset(name, data=v, compression="gzip", compression_opts=9)
            elif kind == "lzf":
                vars_.create_dataset(name, data=v, compression="lzf")
            elif kind == "shuffle_gzip":
                vars_.create_dataset(name, data=v, compression="gzip", shuffle=True)
            elif kind == "fletcher32":
                vars_.create_dataset(name, data=v, fletcher32=True, chunks=True)
            elif kind == "scaleoffset":
                # lossless for floats only with enough digits: store float64 values of few digits
                values[j] = v = np.round(v.astype(np.float64), 2).astype(np.float32)
                vars_.create_dataset(name, data=v.astype(np.float64), scaleoffset=6)
                values[j] = np.asarray(vars_[name][()])
            elif kind == "soft_inside":
                f["vars"].create_dataset(name, data=v)
                vars_[name] = h5py.SoftLink(f"/vars/{name}")
            elif kind == "hard_twice":
                f["vars"].create_dataset(name, data=v)
                vars_[name] = f["vars"][name]
            elif kind == "external":
                if not outside.exists():  # a FIFO or a file the caller made is left as it is
                    outside.write_bytes(v.tobytes())
                vars_.create_dataset(name, shape=v.shape, dtype=v.dtype, external=[(str(outside), 0, v.nbytes)])
            elif kind in ("external_link", "soft_to_external_link"):
                with h5py.File(outside, "w") as g:
                    g.create_dataset("secret", data=v)
                if kind == "external_link":
                    vars_[name] = h5py.ExternalLink(str(outside), "/secret")
                else:
                    f["vars"]["elsewhere"] = h5py.ExternalLink(str(outside), "/secret")
                    vars_[name] = h5py.SoftLink("/vars/elsewhere")
            elif kind == "virtual":
                with h5py.File(outside, "w") as g:
                    g.create_dataset("secret", data=v)
                layout = h5py.VirtualLayout(shape=v.shape, dtype=v.dtype)
                layout[...] = h5py.VirtualSource(str(outside), "secret", shape=v.shape)
                vars_.create_virtual_dataset(name, layout)
            elif kind == "soft_outside":
                f["vars"].create_dataset(name, data=v)
                vars_[name] = h5py.SoftLink(f"../../../../vars/{name}")  # climbs by name, not by hard links
            elif kind == "soft_dangling":
                vars_[name] = h5py.SoftLink("/nowhere/at/all")
            else:
                raise ValueError(kind)
    return values


def write_h5_bomb(path: Path, declared: int, compression: str | None = "gzip", chunked: bool = True) -> None:
    """A ``.weights.h5`` whose kernel declares ``declared`` bytes of float32 and stores none of them."""
    import h5py

    values = gru_vars()
    n = declared // 4
    with h5py.File(path, "w") as f:
        vars_ = f.create_group("layers/gru/cell/vars")
        vars_.create_dataset("0", shape=(n // (3 * H), 3 * H), dtype=np.float32, compression=compression,
                             chunks=(1024, 3 * H) if chunked else None)
        vars_.create_dataset("1", data=values[1])
        vars_.create_dataset("2", data=values[2])


def zeros_member(zf: zipfile.ZipFile, name: str, size: int, head: bytes = b"", chunk: int = 1 << 22) -> None:
    """A deflated member of ``size`` bytes: ``head``, then zeros, streamed (never all in memory)."""
    with zf.open(name, "w", force_zip64=size > 2**31) as out:
        out.write(head)
        left = size - len(head)
        block = b"\0" * chunk
        while left > 0:
            out.write(block[: min(chunk, left)])
            left -= chunk


def npz_bomb(path: Path, declared: int, shape: tuple[int, ...] | None = None) -> None:
    """An ``.npz`` whose ``w0.npy`` is a float32 header then zeros, deflated to about a thousandth.

    ``shape`` gives ``w0`` a shape (a block-layout one reads as a module); by
    default it is flat, of ``declared`` bytes with its header.
    """
    n = (declared - 128) // 4 if shape is None else int(np.prod(shape))
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (n,) if shape is None else tuple(shape)})
    head = buf.getvalue()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf_info = zipfile.ZipInfo("w0.npy")
        zf_info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zf_info, "w", force_zip64=True) as out:
            out.write(head)
            left = n * 4
            block = b"\0" * (1 << 22)
            while left > 0:
                out.write(block[: min(len(block), left)])
                left -= len(block)


def keras_archive(path: Path, h5: bytes, config: bytes | None = None, *, members: dict | None = None,
                  compression: int = zipfile.ZIP_STORED) -> None:
    """A ``.keras`` zip of ``config.json`` (when given), ``model.weights.h5`` and other ``members``."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        if config is not None:
            zf.writestr("config.json", config)
        zf.writestr("model.weights.h5", h5)
        for name, data in (members or {}).items():
            zf.writestr(name, data)
