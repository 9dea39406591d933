"""Hostile files: data stored elsewhere, bombs, FIFOs, deep trees, odd Keras configs, failed writes, pickles.

Each test is a file an attacker can hand to ``numpyrnn``, built with the real
h5py, zipfile, msgpack, onnx, torch and keras.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, files, safeio
from tests.hostile_files import INSIDE, OUTSIDE, gru_vars, keras_archive, npz_bomb, write_h5, write_h5_bomb

from .conftest import ROOT, run_cli

h5py = pytest.importorskip("h5py", reason="the keras extra (h5py) reads .keras/.weights.h5 files")

SECRET = b"root:x:0:0:secret-line-from-another-file\n" * 8


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("KERAS_BACKEND", "torch")
    env.update(extra)
    return env


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


# --------------------------------------------------------------------------------------
# HDF5: data not stored inside the file is refused, naming the dataset, before any read
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", OUTSIDE)
@pytest.mark.parametrize("var", [0, 2])
def test_h5_data_stored_elsewhere_is_refused_naming_the_dataset(tmp_path, kind, var):
    outside = tmp_path / "passwd"
    write_h5(tmp_path / "m.weights.h5", kind, var, outside=outside)
    if kind == "external":
        outside.write_bytes(SECRET * 10)  # the other file's bytes would become the weights
    name = "vars/elsewhere" if kind == "soft_to_external_link" else f"layers/gru/cell/vars/{var}"
    with pytest.raises(LayoutError, match=rf"^m\.weights\.h5: {name}: "):
        files.read_keras(tmp_path / "m.weights.h5")
    blob = (tmp_path / "m.weights.h5").read_bytes()
    keras_archive(tmp_path / "m.keras", blob)
    with pytest.raises(LayoutError, match=rf"^m\.keras: {name}: "):
        files.read_keras(tmp_path / "m.keras")


@pytest.mark.parametrize("kind", INSIDE)
def test_h5_every_storage_kept_inside_the_file_reads_exactly(tmp_path, kind):
    values = write_h5(tmp_path / "m.weights.h5", kind, 1)
    got, _ = files.read_keras(tmp_path / "m.weights.h5")
    for a, b in zip(got[0], values):
        np.testing.assert_array_equal(a, b)


def test_h5_external_storage_through_the_command_line(tmp_path):
    """convert and inspect both refuse, and no other file's bytes reach an output."""
    outside = tmp_path / "env"
    outside.write_bytes(SECRET * 10)
    src = tmp_path / "m.weights.h5"
    write_h5(src, "external", 0, outside=outside)
    out = tmp_path / "out.pt"
    proc = run_cli("convert", src, "-o", out, "--cell", "gru")
    _one_line_error(proc, "layers/gru/cell/vars/0: keeps its data in external file(s)")
    assert not out.exists()
    proc = run_cli("inspect", src)
    _one_line_error(proc, "layers/gru/cell/vars/0: keeps its data in external file(s)")
    assert "secret" not in proc.stdout


def test_h5_external_storage_pointing_at_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    src = tmp_path / "m.weights.h5"
    write_h5(src, "external", 0, outside=fifo)
    proc = subprocess.run([sys.executable, "-m", "numpyrnn", "inspect", str(src)], capture_output=True,
                          text=True, env=_env(), timeout=120)
    _one_line_error(proc, "keeps its data in external file(s)")


def test_h5_unknown_filter_is_refused(tmp_path):
    src = tmp_path / "m.weights.h5"
    write_h5(src)
    with h5py.File(src, "a") as f:
        del f["layers/gru/cell/vars/1"]
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((4, 12))
        plist.set_filter(307, h5py.h5z.FLAG_OPTIONAL, ())  # bzip2's registered id: a plugin
        h5py.h5d.create(f["layers/gru/cell/vars"].id, b"1", h5py.h5t.IEEE_F32LE, h5py.h5s.create_simple((4, 12)), plist)
    with pytest.raises(LayoutError, match=r"layers/gru/cell/vars/1: compressed with HDF5 filter 307, which would "
                                          r"load a plugin"):
        files.read_keras(src)


def test_corrupted_h5_messages_name_the_file(tmp_path):
    src = tmp_path / "m.weights.h5"
    write_h5(src)
    data = src.read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(LayoutError, match=r"^cut\.weights\.h5: "):
        files.read_keras(tmp_path / "cut.weights.h5")
    with h5py.File(src, "a") as f:  # a variable group whose names are not numbers
        f["layers/gru/cell/vars/x"] = np.ones(3, np.float32)
    with pytest.raises(LayoutError, match=r"^m\.weights\.h5: "):
        files.read_keras(src)
    for k in range(0, len(data), 997):  # a flipped byte anywhere: a LayoutError naming the file, or the values
        bad = bytearray(data)
        bad[k] ^= 0xFF
        (tmp_path / "flip.weights.h5").write_bytes(bytes(bad))
        try:
            files.read_keras(tmp_path / "flip.weights.h5")
        except LayoutError as exc:
            assert str(exc).startswith("flip.weights.h5: "), exc


# --------------------------------------------------------------------------------------
# bombs: refused before anything is inflated; a legitimate large file passes
# --------------------------------------------------------------------------------------

def _peak_rss_mib(code: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    script = ("import resource, sys\n" + code +
              "\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(**env), timeout=300)
    peak = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK")]
    return proc, (peak[0] if peak else float("nan"))


def _baseline_mib() -> float:
    """Peak RSS of the same interpreter after importing what the readers import (torch, numpy, h5py)."""
    _, peak = _peak_rss_mib("import h5py, zipfile\nfrom numpyrnn import files, LayoutError\n")
    return peak


def test_h5_bomb_is_refused_without_allocating(tmp_path):
    src = tmp_path / "bomb.weights.h5"
    write_h5_bomb(src, 3_200_000_000)
    assert src.stat().st_size < 64 * 1024
    code = (f"from numpyrnn import files, LayoutError\ntry:\n    files.read_keras({str(src)!r})\n"
            f"except LayoutError as e:\n    print('REFUSED', e)\n")
    proc, peak = _peak_rss_mib(code)
    assert "REFUSED bomb.weights.h5: layers/gru/cell/vars/0: declares 3199999968 bytes but stores none" in proc.stdout, \
        proc.stdout + proc.stderr
    assert peak < _baseline_mib() + 256, peak  # numpy, torch and h5py themselves, not 3.2 GB


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_h5_dataset_declaring_far_more_than_it_stores(tmp_path, compression):
    src = tmp_path / "bomb.weights.h5"
    write_h5_bomb(src, 80 * 2**20, compression=compression, chunked=True)
    with pytest.raises(LayoutError, match=r"vars/0: declares 83886048 bytes but stores none; numpyrnn refuses more "
                                          r"than 100x beyond 67108864 bytes"):
        files.read_keras(src)
    with safeio.limits(ratio=float("inf")):
        if compression is None:  # uncompressed data can never be larger than the file
            with pytest.raises(LayoutError, match=r"vars/0: declares shape \(1747626, 12\) \(83886048 bytes\), more "
                                                  r"than the file's \d+ bytes: corrupted"):
                files.read_keras(src)
            return
        got, _ = files.read_keras(src)  # raised: the zeros HDF5 fills in
    assert got[0][0].nbytes == 83886048 and not got[0][0].any()


def test_npz_bomb_is_refused_before_inflating(tmp_path):
    src = tmp_path / "bomb.npz"
    npz_bomb(src, 1 << 30)
    assert src.stat().st_size < 4 * 2**20
    code = (f"from numpyrnn import files, LayoutError\ntry:\n    files.read_npz({str(src)!r})\n"
            f"except LayoutError as e:\n    print('REFUSED', e)\n")
    proc, peak = _peak_rss_mib(code)
    assert "REFUSED bomb.npz['w0']: inflates to 1073741824 bytes from the" in proc.stdout, proc.stdout + proc.stderr
    assert peak < _baseline_mib() + 256, peak  # not the 1 GiB it declares
    proc = run_cli("convert", src, "-o", tmp_path / "o.pt", "--cell", "gru")
    _one_line_error(proc, "bomb.npz['w0']: inflates to", "--limit ratio=")


def test_limits_are_raised_by_option_and_environment(tmp_path):
    src = tmp_path / "bomb.npz"
    shape = (1, 512, 3 * (13141 + 512))  # a GRU's w0 (input 13141, hidden 512) of zeros: 83884032 bytes
    npz_bomb(src, 0, shape=shape)
    with pytest.raises(LayoutError, match="inflates to"):
        files.read_npz(src)
    with safeio.limits(floor=100 * 2**20):
        assert files.read_npz(src)["w0"].nbytes == 83884032
    proc = subprocess.run([sys.executable, "-m", "numpyrnn", "inspect", str(src), "--cell", "gru"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    _one_line_error(proc, "bomb.npz['w0']: inflates to 83884", "--limit ratio=")
    assert "module 'bomb'" not in proc.stdout
    module = "module 'bomb': cell=gru input=13141 hidden=512 layers=1 directions=1 bias=no"
    for args, env in ((["--limit", "ratio=100000"], {}), (["--limit", "floor=1G"], {}),
                      ([], {"NUMPYRNN_MAX_RATIO": "1e6"}), ([], {"NUMPYRNN_RATIO_FLOOR": "200M"})):
        proc = subprocess.run([sys.executable, "-m", "numpyrnn", "inspect", str(src), "--cell", "gru", *args],
                              capture_output=True, text=True, env=_env(**env), timeout=300)
        assert "inflates to" not in proc.stderr, (args, env, proc.stderr)
        assert proc.returncode == 0 and module in proc.stdout, (args, env, proc.stdout, proc.stderr)
    out = tmp_path / "o.pt"
    proc = subprocess.run([sys.executable, "-m", "numpyrnn", "convert", str(src), "-o", str(out), "--cell", "gru"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    _one_line_error(proc, "inflates to")
    assert not out.exists()
    proc = subprocess.run([sys.executable, "-m", "numpyrnn", "convert", str(src), "-o", str(out), "--cell", "gru"],
                          capture_output=True, text=True, env=_env(NUMPYRNN_MAX_RATIO="1e6"), timeout=300)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    proc = run_cli("inspect", src, "--limit", "ratio=zero")
    assert proc.returncode == 2 and "--limit 'ratio=zero'" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "numpyrnn", "inspect", str(src)], capture_output=True, text=True,
                          env=_env(NUMPYRNN_MAX_DEPTH="deep"), timeout=300)
    _one_line_error(proc, "NUMPYRNN_MAX_DEPTH='deep'")


def test_large_legitimate_files_pass(tmp_path):
    """Stored (ratio 1) and compressed float weights beyond the floor read exactly."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((2, 512, 3 * (2048 + 512)), dtype=np.float32)  # 31 MB
    with safeio.limits(floor=8 * 2**20):  # the same rule with a lower floor: these must pass it
        np.savez(tmp_path / "big.npz", w0=w0)
        np.testing.assert_array_equal(files.read_npz(tmp_path / "big.npz")["w0"], w0)
        np.savez_compressed(tmp_path / "bigz.npz", w0=w0)
        np.testing.assert_array_equal(files.read_npz(tmp_path / "bigz.npz")["w0"], w0)
        with h5py.File(tmp_path / "m.weights.h5", "w") as f:
            g = f.create_group("layers/gru/cell/vars")
            g.create_dataset("0", data=w0.reshape(-1, 3 * 512)[:2048], compression="gzip")
            g.create_dataset("1", data=rng.standard_normal((512, 3 * 512), dtype=np.float32))
            g.create_dataset("2", data=np.zeros((2, 3 * 512), np.float32), compression="gzip")  # zeros: small
        got, _ = files.read_keras(tmp_path / "m.weights.h5")
        np.testing.assert_array_equal(got[0][0], w0.reshape(-1, 3 * 512)[:2048])


def test_keras_archive_bombs_and_huge_config(tmp_path):
    write_h5(tmp_path / "m.weights.h5")
    h5 = (tmp_path / "m.weights.h5").read_bytes()
    with zipfile.ZipFile(tmp_path / "cfg.keras", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("config.json", "w") as out:
            out.write(b'{"config": {"layers": []}, "pad": "')
            for _ in range(20):
                out.write(b" " * 2**20)
            out.write(b'"}')
        zf.writestr("model.weights.h5", h5)
    with pytest.raises(LayoutError, match=r"cfg\.keras\[config\.json\]: holds \d+ bytes; numpyrnn reads at most "
                                          r"16777216; if you trust the file, raise the limit with --limit config="):
        files.read_keras(tmp_path / "cfg.keras")
    with zipfile.ZipFile(tmp_path / "h5.keras", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("model.weights.h5", "w", force_zip64=True) as out:
            out.write(h5)
            for _ in range(96):
                out.write(b"\0" * 2**20)
    with pytest.raises(LayoutError, match=r"h5\.keras\[model\.weights\.h5\]: inflates to \d+ bytes from the \d+ bytes "
                                          r"it stores"):
        files.read_keras(tmp_path / "h5.keras")


# --------------------------------------------------------------------------------------
# regular files only: FIFOs and devices never hang a read
# --------------------------------------------------------------------------------------

READERS = {
    "w.npz": "files.read_npz", "w0.npy": "files.read_npy", "m.keras": "files.read_keras",
    "m.weights.h5": "files.read_keras", "m.onnx": "files.read_onnx", "m.msgpack": "files.read_msgpack",
    "m.pt": "files.read_state_dict", "m.safetensors": "files.read_state_dict",
}


def test_fifos_are_refused_by_every_reader_without_hanging(tmp_path):
    for name in READERS:
        os.mkfifo(tmp_path / name)
    code = "from numpyrnn import files, LayoutError\n" + "".join(
        f"try:\n    {fn}({str(tmp_path / name)!r})\nexcept LayoutError as e:\n    print('REFUSED', e)\n"
        for name, fn in READERS.items())
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REFUSED")]
    assert lines == [f"REFUSED {name}: is a FIFO (named pipe); numpyrnn reads regular files only" for name in READERS], \
        proc.stdout + proc.stderr


def test_a_fifo_in_an_npy_folder_does_not_hang_convert(tmp_path):
    folder = tmp_path / "blocks"
    folder.mkdir()
    os.mkfifo(folder / "w0.npy")
    proc = subprocess.run([sys.executable, "-m", "numpyrnn", "convert", str(folder), "-o", str(tmp_path / "o.pt"),
                           "--cell", "gru"], capture_output=True, text=True, env=_env(), timeout=120)
    _one_line_error(proc, "w0.npy: is a FIFO (named pipe); numpyrnn reads regular files only")


def test_devices_are_refused_without_being_opened():
    with pytest.raises(LayoutError, match=r"null: is a character device; numpyrnn reads regular files only"):
        safeio.regular_file("/dev/null")
    with pytest.raises(LayoutError, match=r"zero: is a character device"):
        files.read_npy("/dev/zero")


# --------------------------------------------------------------------------------------
# trees: malformed or deep config.json, deep msgpack
# --------------------------------------------------------------------------------------

_BAD_CONFIGS = {
    "a list": b"[1, 2]",
    "config a string": b'{"config": "x"}',
    "layers a dict": b'{"config": {"layers": {"a": 1}}}',
    "layer config a string": b'{"config": {"layers": [{"class_name": "GRU", "config": "x"}]}}',
    "bidirectional layer a number": b'{"config": {"layers": [{"class_name": "Bidirectional", "config": {"layer": 5}}]}}',
    "backward layer a list": (b'{"config": {"layers": [{"class_name": "Bidirectional", "config": '
                              b'{"layer": {"class_name": "GRU", "config": {}}, "backward_layer": []}}]}}'),
    "not json": b'{"config": ',
    "not utf-8": b'\xff\xfe{"config"',
    "200k deep": b"[" * 200_000 + b"]" * 200_000,
    "100 deep": b'{"config": ' + b"[" * 100 + b"]" * 100 + b"}",
}


@pytest.mark.parametrize("which", sorted(_BAD_CONFIGS))
def test_malformed_or_deep_config_json_is_one_layout_error(tmp_path, which):
    write_h5(tmp_path / "m.weights.h5")
    keras_archive(tmp_path / "m.keras", (tmp_path / "m.weights.h5").read_bytes(), _BAD_CONFIGS[which])
    with pytest.raises(LayoutError, match=r"^m\.keras(\[config\.json\])?: ") as info:
        files.read_keras(tmp_path / "m.keras")
    if "deep" in which:
        assert "nests deeper than 64 levels" in str(info.value)
    proc = run_cli("inspect", tmp_path / "m.keras")
    _one_line_error(proc, "m.keras")


def test_deep_msgpack_is_one_layout_error(tmp_path):
    msgpack = pytest.importorskip("msgpack", reason="the flax extra (msgpack)")
    data = b"\x81\xa1a" * 900 + msgpack.packb(1)  # {"a": {"a": ... 1}} 900 levels deep
    (tmp_path / "deep.msgpack").write_bytes(data)
    with pytest.raises(LayoutError, match=r"^deep\.msgpack: nests deeper than 64 levels; if you trust the file, "
                                          r"raise the limit with --limit depth="):
        files.read_msgpack(tmp_path / "deep.msgpack")
    _one_line_error(run_cli("inspect", tmp_path / "deep.msgpack"), "deep.msgpack: nests deeper than 64")
    with safeio.limits(depth=2000):
        try:
            files.read_msgpack(tmp_path / "deep.msgpack")
        except LayoutError as exc:  # deep enough for the limit; still no RecursionError
            assert "deep.msgpack" in str(exc)


def test_huge_shapes_name_the_file(tmp_path):
    onnx = pytest.importorskip("onnx", reason="the onnx extra")
    torch.manual_seed(0)
    files.write_onnx(tmp_path / "m.onnx", [{"W": np.ones((1, 12, 3), np.float32), "R": np.ones((1, 12, 4), np.float32),
                                            "B": np.ones((1, 24), np.float32)}], mode="GRU")
    model = onnx.load(str(tmp_path / "m.onnx"))
    t = model.graph.initializer[1]
    del t.dims[:]
    t.dims.extend([1000000, 1000000, 1000000])
    onnx.save(model, str(tmp_path / "huge.onnx"))
    with pytest.raises(LayoutError, match=r"^huge\.onnx: initializer 'W_0': shape \(1000000, 1000000, 1000000\) "
                                          r"needs 4000000000000000000 bytes, the file holds 144: corrupted"):
        files.read_onnx(tmp_path / "huge.onnx")
    _one_line_error(run_cli("inspect", tmp_path / "huge.onnx"), "huge.onnx: initializer 'W_0'")
    msgpack = pytest.importorskip("msgpack", reason="the flax extra (msgpack)")
    record = msgpack.packb(((-4, -3), "float32", b"\0" * 48), use_bin_type=True)
    (tmp_path / "neg.msgpack").write_bytes(msgpack.packb({"cell": {"i": msgpack.ExtType(1, record)}}))
    with pytest.raises(LayoutError, match=r"^neg\.msgpack: malformed array record \(negative dimension"):
        files.read_msgpack(tmp_path / "neg.msgpack")


# --------------------------------------------------------------------------------------
# pickles: refused in numpyrnn's own words
# --------------------------------------------------------------------------------------

class _System:
    def __reduce__(self):
        return (os.system, ("echo never",))


def test_pickle_refusal_never_suggests_weights_only_false(tmp_path):
    torch.save({"weight_ih_l0": _System()}, tmp_path / "evil.pt")
    torch.save(_System(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("evil.pt", "legacy.pt"):
        with pytest.raises(LayoutError) as info:
            files.read_state_dict(tmp_path / name)
        text = str(info.value)
        assert text.startswith(f"{name}: refused: loading it would run pickled code (Unsupported global: GLOBAL "), text
        assert "system" in text
        for proc in (run_cli("inspect", tmp_path / name),
                     run_cli("export", tmp_path / name, "-o", tmp_path / "o.npz", "--cell", "gru", "--to", "blocks")):
            err = _one_line_error(proc, "refused: loading it would run pickled code")
            assert "never" not in proc.stdout.splitlines()  # the pickled ``echo never`` did not run
            for advice in (text, err):
                assert "weights_only set to False" not in advice and "weights_only=False" not in advice
                assert "will likely succeed" not in advice


# --------------------------------------------------------------------------------------
# writes: a failed write says why; an existing output keeps its mode and owner
# --------------------------------------------------------------------------------------

_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
from numpyrnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_failed_write_is_reported_as_itself(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="the files extra")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "w.npz", w0=rng.standard_normal((2, 256, 3 * (256 + 256)), dtype=np.float32))
    out = tmp_path / f"out{suffix}"
    proc = subprocess.run([sys.executable, "-c", _LIMITED, "convert", str(tmp_path / "w.npz"), "-o", str(out),
                           "--cell", "gru"], capture_output=True, text=True, env=_env(), timeout=300)
    err = _one_line_error(proc, f"out{suffix}: cannot be written (", "File too large", "nothing was written")
    assert "enforce fail" not in err
    assert not out.exists() and not list(tmp_path.glob(".*.part"))


def test_replacing_an_output_keeps_its_mode_and_owner(tmp_path):
    np.savez(tmp_path / "w.npz", **{k: v for k, v in NumpyGRU(3, 4).to_numpy().items() if v is not None})
    out = tmp_path / "o.pt"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    before = os.stat(out)
    assert run_cli("convert", tmp_path / "w.npz", "-o", out, "--cell", "gru").returncode == 0
    after = os.stat(out)
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced by rename, never written in place
    os.chmod(out, 0o604)
    assert files.write_npz(out.with_suffix(".npz"), {"a": np.ones(2)}) > 0  # a new file: the umask decides
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(out.with_suffix(".npz")).st_mode) == 0o666 & ~mask


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_replacing_an_output_keeps_another_users_ownership(tmp_path):
    out = tmp_path / "o.npz"
    out.write_bytes(b"old")
    os.chown(out, 12345, 23456)
    files.write_npz(out, {"a": np.ones(2)})
    assert (os.stat(out).st_uid, os.stat(out).st_gid) == (12345, 23456)


def test_an_output_that_is_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "o.pt")
    with pytest.raises(LayoutError, match=r"o\.pt: exists and is not a regular file"):
        files.write_state_dict(tmp_path / "o.pt", NumpyGRU(3, 4).state_dict())
    assert stat.S_ISFIFO(os.stat(tmp_path / "o.pt").st_mode)


def test_h5_values_do_not_leak_between_files(tmp_path):
    """A dataset stored elsewhere never reaches a written output, whatever the command."""
    outside = tmp_path / "secret.bin"
    values = gru_vars(3)
    outside.write_bytes(values[0].tobytes())
    write_h5(tmp_path / "m.weights.h5", "external", 0, outside=outside)
    proc = run_cli("convert", tmp_path / "m.weights.h5", "-o", tmp_path / "o.safetensors", "--cell", "gru")
    _one_line_error(proc, "keeps its data in external file(s)")
    assert not (tmp_path / "o.safetensors").exists()


def test_json_helper_is_exact_about_depth():
    assert safeio.load_json(b"[" * 64 + b"]" * 64, "x") == eval("[" * 64 + "]" * 64)  # noqa: S307 - a literal
    with pytest.raises(LayoutError, match=r"^x: nests deeper than 64 levels"):
        safeio.load_json(b"[" * 65 + b"]" * 65, "x")
    with pytest.raises(LayoutError, match=r"^x: not valid JSON"):
        safeio.load_json(json.dumps({"a": 1}).encode()[:-1], "x")


# --------------------------------------------------------------------------------------
# every format's reader: TF checkpoints, Paddle, detection
# --------------------------------------------------------------------------------------

DATA = ROOT / "tests" / "data"


def test_detection_refuses_a_fifo_before_any_sniff(tmp_path):
    from numpyrnn import formats

    names = ("m.keras", "m.onnx", "m.pdparams", "m.index", "m.pt", "w.npz", "noname")
    for name in names:
        os.mkfifo(tmp_path / name)
    code = ("from numpyrnn import formats, LayoutError, load_all\n" + "".join(
        f"try:\n    formats.detect_format({str(tmp_path / n)!r})\nexcept LayoutError as e:\n    print('REFUSED', e)\n"
        f"try:\n    load_all({str(tmp_path / n)!r})\nexcept LayoutError as e:\n    print('REFUSED', e)\n"
        for n in names))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    want = [f"REFUSED {n}: is a FIFO (named pipe); numpyrnn reads regular files only" for n in names for _ in (0, 1)]
    assert proc.stdout.splitlines() == want, proc.stdout + proc.stderr
    _one_line_error(run_cli("inspect", tmp_path / "m.pdparams"), "m.pdparams: is a FIFO")
    with pytest.raises(LayoutError, match="is a FIFO"):
        formats.get("paddle").read(tmp_path / "m.pdparams")


def test_tf_checkpoint_shards_and_index_must_be_regular_files(tmp_path):
    import shutil

    from numpyrnn.formats import tfckpt

    for f in (DATA / "tf_checkpoints").glob("bidir.ckpt.*"):
        shutil.copy(f, tmp_path / f.name)
    shard = next(tmp_path.glob("bidir.ckpt.data-*"))
    shard.unlink()
    os.mkfifo(shard)
    code = (f"from numpyrnn import LayoutError, load_all\ntry:\n    load_all({str(tmp_path / 'bidir.ckpt.index')!r})\n"
            f"except LayoutError as e:\n    print('REFUSED', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert "REFUSED" in proc.stdout and "is a FIFO (named pipe)" in proc.stdout, proc.stdout + proc.stderr
    index = tmp_path / "bidir.ckpt.index"
    index.rename(tmp_path / "kept")
    os.mkfifo(index)
    with pytest.raises(LayoutError, match=r"bidir\.ckpt\.index: is a FIFO"):
        tfckpt.sniff(index)


def test_tf_checkpoint_folder_cannot_name_a_checkpoint_elsewhere(tmp_path):
    import shutil

    from numpyrnn.formats import tfckpt

    elsewhere = tmp_path / "elsewhere"
    folder = tmp_path / "given"
    elsewhere.mkdir()
    folder.mkdir()
    for f in (DATA / "tf_checkpoints").glob("bidir.ckpt.*"):
        shutil.copy(f, elsewhere / f.name)
    for named in (str(elsewhere / "bidir.ckpt"), "../elsewhere/bidir.ckpt"):
        (folder / "checkpoint").write_text(f'model_checkpoint_path: "{named}"\n')
        with pytest.raises(LayoutError, match=r"checkpoint: names the checkpoint .*, outside its folder"):
            tfckpt.read(folder)
        _one_line_error(run_cli("inspect", folder), "outside its folder")
    for f in elsewhere.iterdir():  # a TF1 checkpoint moved with its absolute path: taken from the folder
        shutil.copy(f, folder / f.name)
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "{tmp_path / "gone" / "bidir.ckpt"}"\n')
    assert list(tfckpt.load_all_from_checkpoint(folder)) == ["bidirectional_rnn"]


def test_deep_pdparams_is_one_layout_error(tmp_path):
    n = 100_000  # {"a": [[[...[1]...]]]} n levels deep, written opcode by opcode
    (tmp_path / "deep.pdparams").write_bytes(b"\x80\x02}X\x01\x00\x00\x00a" + b"]" * n + b"K\x01" + b"a" * n + b"s.")
    from numpyrnn import load_all

    with pytest.raises(LayoutError, match=r"deep\.pdparams: nests deeper than 64 levels; if you trust the file"):
        load_all(tmp_path / "deep.pdparams")
    _one_line_error(run_cli("inspect", tmp_path / "deep.pdparams"), "nests deeper than 64 levels")


def test_onnx_constant_folding_never_allocates_beyond_the_limits(tmp_path):
    """A weight computed by ``ConstantOfShape`` (or ``Concat``) may not declare far more than the model stores."""
    onnx = pytest.importorskip("onnx", reason="the onnx extra")
    from onnx import helper, numpy_helper

    import numpyrnn

    files.write_onnx(tmp_path / "m.onnx", [{"W": np.ones((1, 12, 3), np.float32), "R": np.ones((1, 12, 4), np.float32),
                                            "B": np.ones((1, 24), np.float32)}], mode="GRU")
    model = onnx.load(str(tmp_path / "m.onnx"))
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    b_name = gru.input[3]
    keep = [t for t in model.graph.initializer if t.name != b_name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + [numpy_helper.from_array(np.array([1, 2**40], np.int64), "b_shape")])
    model.graph.node.insert(0, helper.make_node("ConstantOfShape", ["b_shape"], [b_name], name="bomb",
                                                value=numpy_helper.from_array(np.ones(1, np.float32))))
    onnx.save(model, str(tmp_path / "bomb.onnx"))
    with pytest.raises(LayoutError, match=r"^bomb\.onnx: node 'bomb' \(ConstantOfShape\): computes 4398046511104 "
                                          r"bytes from the \d+ bytes it stores .*--limit ratio="):
        numpyrnn.load_all(tmp_path / "bomb.onnx")
    _one_line_error(run_cli("inspect", tmp_path / "bomb.onnx"), "node 'bomb' (ConstantOfShape): computes")
    model.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.array([1, 24], np.int64), "b_shape"))
    onnx.save(model, str(tmp_path / "ok.onnx"))  # the same graph within the limits: its bias is all ones
    gru_module = numpyrnn.load(tmp_path / "ok.onnx")
    assert torch.equal(gru_module.bias_ih_l0, torch.ones(12)) and torch.equal(gru_module.bias_hh_l0, torch.ones(12))
