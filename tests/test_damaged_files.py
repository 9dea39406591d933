"""Damaged files: a torn compressed stream or pickle is one LayoutError naming the file.

A file that is cut short or has bytes overwritten makes the parsers underneath
numpyrnn fail the way Python fails on bad data: zlib and lzma raise their own
errors (not OSError), and torch's weights-only unpickler raises ``KeyError`` for
a memo entry that was never stored, ``IndexError`` for an empty stack. Each of
them must reach the user as :class:`numpyrnn.LayoutError` that names the file
(and the archive member), never as a bare ``zlib.error`` or ``KeyError``.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, files

from .cli.conftest import run_cli


def _arrays() -> dict[str, np.ndarray]:
    m = NumpyGRU(3, 4, num_layers=2, bidirectional=True)
    return {k: v for k, v in m.to_numpy().items() if v is not None}


def _data_start(path, member: str) -> int:
    """Offset in the file of ``member``'s (compressed) data, after its local header."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    off = info.header_offset
    assert raw[off:off + 4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack("<HH", raw[off + 26:off + 30])
    return off + 30 + name_len + extra_len


def _overwrite(path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at:at + len(data)] = data
    path.write_bytes(bytes(raw))


def test_compressed_npz_with_a_damaged_deflate_stream(tmp_path):
    src = tmp_path / "w.npz"
    np.savez_compressed(src, **_arrays())
    # 0xff opens a final block of the reserved type 3: zlib raises "invalid block type"
    _overwrite(src, _data_start(src, "w.npy"), b"\xff" * 8)
    for read in (files.read_npz, numpyrnn.load, numpyrnn.load_all):
        with pytest.raises(LayoutError, match=r"w\.npz\['w'\]: cannot be read \(.*invalid block type\); "
                                              r"the archive is corrupted"):
            read(src)
    proc = run_cli("convert", src, "-o", tmp_path / "o.safetensors", "--cell", "gru")
    assert proc.returncode != 0
    assert "w.npz['w']: cannot be read" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_npz_member_with_a_damaged_lzma_stream(tmp_path):
    src = tmp_path / "w.npz"
    arrays = _arrays()
    with zipfile.ZipFile(src, "w", zipfile.ZIP_LZMA) as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w") as fp:
                np.lib.format.write_array(fp, v)
    np.testing.assert_array_equal(files.read_npz(src)["w0"], arrays["w0"])  # readable before the damage
    _overwrite(src, _data_start(src, "w0.npy") + 4, b"\xff" * 32)
    with pytest.raises(LayoutError, match=r"w\.npz\['w0'\]: cannot be read \(.*\); the archive is corrupted"):
        files.read_npz(src)


def test_zip_member_with_a_damaged_deflate_stream(tmp_path):
    src = tmp_path / "m.keras"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}' * 20)
    assert files.read_zip_member(src, "config.json").startswith(b'{"class_name"')
    _overwrite(src, _data_start(src, "config.json"), b"\xff" * 8)
    with pytest.raises(LayoutError, match=r"m\.keras: not a readable zip archive \(.*invalid block type\)"):
        files.read_zip_member(src, "config.json")


# pickles torch's weights-only unpickler cannot follow: each fails inside torch with a plain
# Python error, not an UnpicklingError
_TORN_PICKLES = {
    "memo entry never stored (KeyError)": b"\x80\x02h\x09.",
    "empty stack (IndexError)": b"\x80\x02.",
    "opcode cut short": b"\x80\x02J\x01",
}


def _zip_pt_with(path, pickle_bytes: bytes) -> None:
    """A torch zip checkpoint of a real state_dict whose ``data.pkl`` is ``pickle_bytes``."""
    good = path.with_name("good.pt")
    torch.save(NumpyGRU(3, 4).state_dict(), good)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, pickle_bytes if info.filename.endswith("/data.pkl") else data)


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("which", sorted(_TORN_PICKLES))
def test_torn_pickle_in_a_pt_file(tmp_path, which, container):
    src = tmp_path / "w.pt"
    if container == "zip":
        _zip_pt_with(src, _TORN_PICKLES[which])
    else:
        src.write_bytes(_TORN_PICKLES[which])
    for read in (files.load_torch, files.read_state_dict, numpyrnn.load):
        with pytest.raises(LayoutError, match=r"^w\.pt: not a readable torch file \("):
            read(src)
    proc = run_cli("inspect", src)
    assert proc.returncode != 0
    assert "w.pt: not a readable torch file" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_torn_pickle_names_what_python_raised(tmp_path):
    src = tmp_path / "w.pt"
    _zip_pt_with(src, _TORN_PICKLES["memo entry never stored (KeyError)"])
    with pytest.raises(LayoutError) as info:
        files.load_torch(src)
    assert str(info.value) == "w.pt: not a readable torch file (KeyError: 9); the file is damaged or not a torch file"


def test_onnx_string_attribute_that_is_not_utf8(tmp_path):
    onnx = pytest.importorskip("onnx", reason="the onnx extra")
    src, w = tmp_path / "m.onnx", tmp_path / "w.pt"
    torch.save(NumpyGRU(3, 4, num_layers=2).state_dict(), w)
    proc = run_cli("export", w, "--to", "onnx", "--cell", "gru", "-o", src)
    assert proc.returncode == 0, proc.stderr
    assert isinstance(numpyrnn.load(src), NumpyGRU)  # readable before the damage
    model = onnx.load(str(src))
    nodes = [n for n in model.graph.node if n.op_type == "GRU"]
    assert len(nodes) == 2
    for n in nodes:
        if not any(a.name == "direction" for a in n.attribute):
            n.attribute.append(onnx.helper.make_attribute("direction", "forward"))
    target = nodes[-1]  # the second layer: read where the stack's nodes are compared, and again per node
    attr = next(a for a in target.attribute if a.name == "direction")
    attr.s = b"for\xffward"
    onnx.save(model, str(src))
    with pytest.raises(LayoutError, match=r"GRU node .* attribute direction: holds bytes that are not UTF-8 text "
                                          r"\(invalid start byte at byte 3\); the file is damaged"):
        numpyrnn.load(src)


@pytest.mark.parametrize("missing", [1, 2])  # W, R
def test_onnx_node_without_its_w_or_r_input(tmp_path, missing):
    # found by the damage fuzz target (--seed 10): a damaged input name left the GRU's R empty (an
    # absent optional input to ONNX), and reading the shapes raised KeyError: 'R'
    onnx = pytest.importorskip("onnx", reason="the onnx extra")
    src, w = tmp_path / "m.onnx", tmp_path / "w.pt"
    torch.save(NumpyGRU(3, 4).state_dict(), w)
    proc = run_cli("export", w, "--to", "onnx", "--cell", "gru", "-o", src)
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(str(src))
    node = next(n for n in model.graph.node if n.op_type == "GRU")
    node.input[missing] = ""
    onnx.save(model, str(src))
    name, what = [("W", "input weights"), ("R", "recurrent weights")][missing - 1]
    for read in (numpyrnn.load, numpyrnn.load_all):
        with pytest.raises(LayoutError, match=rf"GRU node .*: has no input {name} \(the {what}\), which ONNX's GRU "
                                              r"requires; the model is damaged or incomplete"):
            read(src)


def test_a_nameless_onnx_node_without_outputs_is_named_in_messages():
    onnx = pytest.importorskip("onnx", reason="the onnx extra")
    from numpyrnn.layouts.onnx import _where

    assert _where(onnx.helper.make_node("GRU", ["X", "W", "R"], [])) == "GRU node (no name, no output)"
    assert _where(onnx.helper.make_node("GRU", ["X", "W", "R"], ["Y"])) == "GRU node writing 'Y'"
    assert _where(onnx.helper.make_node("GRU", ["X", "W", "R"], [], name="g")) == 'GRU node "g"'


def _central_entry(path, member: str) -> int:
    """Offset in the file of ``member``'s entry in the zip's central directory."""
    raw = path.read_bytes()
    at = raw.index(b"PK\x01\x02")
    while True:
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[at + 28:at + 34])
        if raw[at + 46:at + 46 + name_len].decode() == member:
            return at
        at += 46 + name_len + extra_len + comment_len


def test_npz_member_with_a_compression_method_zipfile_cannot_read(tmp_path):
    src = tmp_path / "w.npz"
    np.savez(src, **_arrays())
    _overwrite(src, _central_entry(src, "w.npy") + 10, struct.pack("<H", 99))  # no such method
    for read in (files.read_npz, numpyrnn.load):
        with pytest.raises(LayoutError, match=r"w\.npz\['w'\]: is stored in a way Python's zipfile cannot read "
                                              r"\(.*compression method.*\); the archive is damaged, or was written "
                                              r"by another zip tool: write it with np\.savez"):
            read(src)


def test_npz_member_whose_name_starts_with_a_nul_byte(tmp_path):
    # found by the damage fuzz target (--seed 5): zipfile cuts a member's name at its first NUL, so
    # the member's name is empty and ZipInfo.is_dir() raised IndexError
    src = tmp_path / "w.npz"
    np.savez(src, **_arrays())
    _overwrite(src, _central_entry(src, "b.npy") + 46, b"\x00")  # the name's first byte
    message = (r"w\.npz: a member of the archive has an empty name \(in its central directory\); the archive is "
               r"corrupted")
    for read in (files.read_npz, numpyrnn.load, numpyrnn.load_all):
        with pytest.raises(LayoutError, match="^" + message):
            read(src)
    proc = run_cli("convert", src, "-o", tmp_path / "o.safetensors", "--cell", "gru")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "a member of the archive has an empty name" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_zip_member_name_flagged_utf8_that_is_not(tmp_path):
    # found by the damage fuzz target (--seed 7): zipfile decodes a name whose flags say UTF-8 as
    # UTF-8, and raised UnicodeDecodeError out of ZipFile() and ZipFile.open()
    src = tmp_path / "w.npz"
    np.savez(src, **_arrays())
    entry = _central_entry(src, "b.npy")
    flags = struct.unpack("<H", src.read_bytes()[entry + 8:entry + 10])[0]
    _overwrite(src, entry + 8, struct.pack("<H", flags | 0x800))
    _overwrite(src, entry + 46, b"\xfd")  # the name's first byte: never in UTF-8
    why = (r"\(a member name flagged as UTF-8 is not UTF-8: 'utf-8' codec can't decode byte 0xfd in position 0: "
           r"invalid start byte\)")
    with pytest.raises(LayoutError, match=r"^w\.npz: not a readable \.npz archive " + why):
        files.read_npz(src)
    with pytest.raises(LayoutError, match=r"^w\.npz: not a readable zip archive " + why):
        files.zip_names(src)
    with pytest.raises(LayoutError, match=r"^w\.npz: not a readable zip archive " + why):
        files.read_zip_member(src, "w.npy")
    for read in (numpyrnn.load, numpyrnn.load_all):
        with pytest.raises(LayoutError, match=r"^w\.npz: .*a member name flagged as UTF-8 is not UTF-8"):
            read(src)


def test_zip_local_header_name_flagged_utf8_that_is_not(tmp_path):
    src = tmp_path / "w.npz"
    np.savez(src, **_arrays())
    start = _data_start(src, "b.npy")
    local = src.read_bytes().rindex(b"PK\x03\x04", 0, start)
    flags = struct.unpack("<H", src.read_bytes()[local + 6:local + 8])[0]
    _overwrite(src, local + 6, struct.pack("<H", flags | 0x800))
    _overwrite(src, local + 30, b"\xfd")
    with pytest.raises(LayoutError, match=r"^w\.npz\['b'\]: cannot be read \(a member name flagged as UTF-8 is not "
                                          r"UTF-8: .*\); the archive is corrupted"):
        files.read_npz(src)


def test_pdparams_pickle_declaring_a_huge_bytearray(tmp_path, capfd):
    # found by the damage fuzz target (--seed 6): five bytes overwritten with 0x96 (BYTEARRAY8) and
    # the length that follows; the unpickler allocated it, failed, and CPython printed a SystemError
    from .cli.conftest import ROOT

    data = bytearray((ROOT / "tests/data/paddle_params/lstm_proj_bidirect.pdparams").read_bytes())
    data[5457:5462] = b"\x96" * 5
    src = tmp_path / "m.pdparams"
    src.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(LayoutError, match=r"m\.pdparams: not a readable \.pdparams pickle \(ValueError: expected "
                                          r"\d+ bytes in a bytearray8, but only \d+ remain\)"):
        numpyrnn.load_all(src)
    assert capfd.readouterr().err == ""


def test_zip_needing_a_newer_zip_version(tmp_path):
    src = tmp_path / "w.npz"
    np.savez(src, **_arrays())
    _overwrite(src, _central_entry(src, "w0.npy") + 6, struct.pack("<H", 255))  # version needed: 25.5
    with pytest.raises(LayoutError, match=r"w\.npz: not a readable \.npz archive \(zip file version 25\.5\)"):
        files.read_npz(src)
    with pytest.raises(LayoutError, match=r"w\.npz: not a readable zip archive \(zip file version 25\.5\)"):
        files.zip_names(src)
    with pytest.raises(LayoutError, match=r"w\.npz"):
        numpyrnn.load(src)


def test_onnx_nodes_without_names_or_outputs_still_read(tmp_path):
    onnx = pytest.importorskip("onnx", reason="the onnx extra")
    src, w = tmp_path / "m.onnx", tmp_path / "w.pt"
    original = NumpyGRU(3, 4)
    torch.save(original.state_dict(), w)
    proc = run_cli("export", w, "--to", "onnx", "--cell", "gru", "-o", src)
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(str(src))
    for n in model.graph.node:  # the weights are the node's inputs: its name and outputs only label it
        n.name = ""
        del n.output[:]
    model.graph.node.append(onnx.helper.make_node("Relu", ["X"], []))
    onnx.save(model, str(src))
    mf = numpyrnn.read_model(src)
    assert ("Relu", "Relu") in mf.skipped
    modules = numpyrnn.load_all(src)
    assert list(modules) == ["GRU"]
    for k, v in original.state_dict().items():
        torch.testing.assert_close(modules["GRU"].state_dict()[k], v, rtol=0, atol=0)


def _npy_with_short_header_length(a: np.ndarray) -> bytes:
    """A ``.npy`` whose header length field is cut to 32: numpy then reads half of the header
    literal, and its tokenizer fails on the unclosed brace (``tokenize.TokenError``)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    raw = bytearray(buf.getvalue())
    assert raw[6:8] == b"\x01\x00"  # format version 1.0: the length is bytes 8-9
    raw[8:10] = struct.pack("<H", 32)
    return bytes(raw)


def test_npy_header_that_numpy_cannot_tokenize(tmp_path):
    a = _arrays()["w0"]
    (tmp_path / "w0.npy").write_bytes(_npy_with_short_header_length(a))
    with pytest.raises(LayoutError, match=r"^w0\.npy: not a readable \.npy array \(TokenError: "):
        files.read_npy(tmp_path / "w0.npy")
    src = tmp_path / "w.npz"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as zf:
        for k, v in _arrays().items():
            zf.writestr(f"{k}.npy", _npy_with_short_header_length(v) if k == "w0" else _npy_bytes(v))
    for read in (files.read_npz, numpyrnn.load):
        with pytest.raises(LayoutError, match=r"w\.npz\['w0'\]: not a readable \.npy array \(TokenError: "):
            read(src)


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def test_hdf5_attribute_declaring_more_than_the_config_limit_is_refused_unread(tmp_path):
    h5py = pytest.importorskip("h5py", reason="the files extra")
    from numpyrnn import safeio

    src = tmp_path / "m.weights.h5"
    with h5py.File(src, "w") as f:
        f.create_group("layers").attrs.create("notes", np.zeros(5000, np.float64))  # 40000 bytes
    with files.open_h5(src):  # within the default limit
        pass
    with safeio.limits(config_bytes=1000), pytest.raises(
            LayoutError, match=r"^m\.weights\.h5: layers: attribute 'notes' declares 40000 bytes; numpyrnn reads at "
                               r"most 1000 bytes of an attribute; if you trust the file, raise the limit"):
        with files.open_h5(src):
            pass


# Eight bytes of a Keras 2 full-model .h5 changed (found by ``fuzz_numpyrnn.py --target damage
# --seed 4``): two objects of the global heap collection that holds the file's variable-length
# attributes lose their index and size. HDF5's walk of that collection then never moves past the
# first of them, and its read of ``model_config`` never returns.
_HANGING_H5 = [("flip", 524288, 246, 63), ("zero", 370, 246, 6), ("zero", 16916, 69, 30), ("flip", 524288, 246, 63)]


def test_damaged_keras2_h5_whose_heap_walk_never_advances_is_refused(tmp_path):
    pytest.importorskip("h5py", reason="the files extra")
    import subprocess
    import sys

    from .cli.conftest import ROOT

    spec = ROOT / "fuzz" / "fuzz_numpyrnn.py"
    src = tmp_path / "m.h5"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('fuzz_numpyrnn', {str(spec)!r})\n"
        "fz = importlib.util.module_from_spec(spec); sys.modules['fuzz_numpyrnn'] = fz; spec.loader.exec_module(fz)\n"
        f"data = open({str(ROOT / 'tests/data/keras2_files/bi_cudnnlstm.h5')!r}, 'rb').read()\n"
        f"open({str(src)!r}, 'wb').write(fz._damaged(data, {_HANGING_H5!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)
    # in a child with a time limit: were the check missing, the read would not return
    read = (f"import numpyrnn\ntry:\n    numpyrnn.load_all({str(src)!r})\nexcept numpyrnn.LayoutError as e:\n"
            "    print('REFUSED', e)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("numpyrnn.load_all of the damaged .h5 did not return within 60 s")
    assert proc.stdout.strip() == (
        "REFUSED m.h5: the HDF5 global heap collection at byte 2048 is damaged: its object at byte 2080 (index 0) "
        "declares no bytes, so HDF5's walk of the collection never moves past it; refused before HDF5 reads it"
    ), proc.stdout + proc.stderr


def _collection(objects: list[tuple[int, int, bytes]], size: int = 4096) -> bytes:
    """A global heap collection as HDF5 writes it (sizes of 8 bytes): ``objects`` as (index,
    declared size, data), then one free-space object over the rest."""
    out = bytearray(b"GCOL\x01\x00\x00\x00" + size.to_bytes(8, "little"))
    for index, declared, data in objects:
        out += index.to_bytes(2, "little") + (1).to_bytes(2, "little") + bytes(4) + declared.to_bytes(8, "little")
        out += data + bytes(-len(data) % 8)
    free = size - len(out)
    out += (0).to_bytes(2, "little") + bytes(6) + free.to_bytes(8, "little")
    return bytes(out + bytes(size - len(out)))


@pytest.mark.parametrize("kind", ["bytes", "memoryview"])
def test_global_heap_walk_accepts_whole_collections_and_refuses_broken_ones(kind):
    from numpyrnn import safeio

    def check(data: bytes) -> None:
        safeio.check_global_heaps(data if kind == "bytes" else memoryview(data), "m.h5")

    good = bytes(100) + _collection([(1, 5, b"2.2.4"), (2, 10, b"tensorflow")]) + bytes(50)
    check(good)
    check(good + b"GCOL\x01\x00\x00\x00" + (1 << 40).to_bytes(8, "little"))  # larger than the file: not read whole
    check(good[:-60])  # cut inside the collection: HDF5's read of it fails; nothing to walk
    with pytest.raises(LayoutError, match=r"^m\.h5: the HDF5 global heap collection at byte 100 is damaged: its object "
                                          r"at byte 116 \(index 0\) declares no bytes"):
        check(bytes(100) + _collection([(0, 0, b"")]))
    with pytest.raises(LayoutError, match=r"^m\.h5: the HDF5 global heap collection at byte 0 is damaged: its object "
                                          r"at byte 40 \(index 2\) declares 5000 bytes, past the collection's end "
                                          r"at byte 4096; refused before HDF5 reads it$"):
        check(_collection([(1, 5, b"2.2.4"), (2, 5000, b"x")]))
    for h5 in sorted((__import__("pathlib").Path(__file__).parent / "data").rglob("*.h5")):
        check(h5.read_bytes())  # every HDF5 file the tests hold: their collections walk to their ends


def _stall_first_heap(data: bytes) -> tuple[bytes, int, int]:
    """``data`` (an HDF5 file) with the free-space object of its first global heap collection made
    to declare no bytes; returns it, the collection's offset and the object's."""
    pos = data.index(b"GCOL\x01\x00\x00\x00")
    p, end = pos + 16, pos + int.from_bytes(data[pos + 8:pos + 16], "little")
    while int.from_bytes(data[p:p + 2], "little"):  # objects of index > 0, to the free space
        p += 16 + -(-int.from_bytes(data[p + 8:p + 16], "little") // 8) * 8
    assert p + 16 <= end
    return data[:p + 8] + bytes(8) + data[p + 16:], pos, p


def test_keras3_files_with_a_stalled_global_heap_are_refused(tmp_path):
    """The check reads a file on disk through a mapping, and a ``.keras`` member in memory."""
    pytest.importorskip("h5py", reason="the files extra")
    keras = pytest.importorskip("keras", reason="the interop extra")
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4)])
    model.save(tmp_path / "ok.keras")
    model.save_weights(tmp_path / "ok.weights.h5")
    data, pos, p = _stall_first_heap((tmp_path / "ok.weights.h5").read_bytes())
    (tmp_path / "m.weights.h5").write_bytes(data)
    message = (f"the HDF5 global heap collection at byte {pos} is damaged: its object at byte {p} (index 0) "
               f"declares no bytes, so HDF5's walk of the collection never moves past it; refused before HDF5 "
               f"reads it")
    with pytest.raises(LayoutError, match="^m\\.weights\\.h5: " + __import__("re").escape(message)):
        numpyrnn.load_all(tmp_path / "m.weights.h5")
    with zipfile.ZipFile(tmp_path / "ok.keras") as src, zipfile.ZipFile(tmp_path / "m.keras", "w") as dst:
        for info in src.infolist():
            member = src.read(info)
            if info.filename == "model.weights.h5":
                member, pos, p = _stall_first_heap(member)
            dst.writestr(info, member)
    with pytest.raises(LayoutError, match=r"^m\.keras: the HDF5 global heap collection at byte \d+ is damaged"):
        numpyrnn.load_all(tmp_path / "m.keras")
    (whole,), (weights,) = (numpyrnn.load_all(tmp_path / n).values() for n in ("ok.keras", "ok.weights.h5"))
    for k, v in whole.state_dict().items():  # the undamaged files still read, and alike
        assert torch.equal(v, weights.state_dict()[k]), k
