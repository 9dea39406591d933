"""Fuzz numpyrnn's entry points for a set time.

    python fuzz/fuzz_numpyrnn.py --seconds 60            # every target, random seeds
    python fuzz/fuzz_numpyrnn.py --seconds 600 --target load --seed 7
    python fuzz/fuzz_numpyrnn.py --atheris -- -max_total_time=60   # coverage-guided, if atheris is installed

Each target is a hypothesis test: a strategy that builds an input (a valid
source put through a chain of corruptions, awkward memory layouts and odd
options) and a check that runs numpyrnn on it. A *finding* is:

* any exception other than ``LayoutError`` or ``TypeError``;
* a refused load that changed the target module's parameters;
* an accepted input that leaves a non-finite parameter, or a module whose
  export is not exactly the input (for constructors);
* any warning.

Hypothesis shrinks a finding to a small example and prints it with a
``@reproduce_failure`` blob; add it as an ``@example`` to the matching test
under ``tests/property/`` so that it stays covered, then fix it.

The ``h5`` target generates HDF5 files with every storage kind (contiguous,
compact, chunked, each filter chain), every link type (hard, soft, external)
and data stored elsewhere (external storage, virtual datasets), and gzip
datasets that declare any multiple of what they store (bombs of every degree,
read under random limits), then may flip or cut their bytes; the ``zip`` target compresses ``.npz`` and ``.keras``
members to any ratio and reads them under random limits. The ``damage`` target flips,
cuts, overwrites, zeroes or repeats bytes of a small valid file of every format numpyrnn
reads (those whose writer is installed, and the checkpoints in ``tests/data``) and loads
it with ``numpyrnn.load_all``.

Adding a target: write ``check(case)`` that raises ``Finding`` on a bad outcome and a
strategy for ``case``, and register both with ``@target(name, strategy)``. A
file-reader target draws the bytes of a valid file (written by the library
itself), flips, truncates or extends them, and checks that the reader either
returns valid leaves or raises ``LayoutError``/``TypeError``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's numpyrnn and its test strategies

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from numpyrnn import LayoutError, files  # noqa: E402
from tests.hostile_files import OUTSIDE, write_h5  # noqa: E402
from tests.property.cases import (  # noqa: E402
    BLOCK,
    CASES,
    LayoutCase,
    assert_sources_identical,
    assert_state_identical,
    leaves,
    replace,
    state_bits,
)
from tests.property.hostile import check_h5_case, check_zip_case, h5_cases, zip_cases  # noqa: E402
from tests.property.mutations import TRANSFORMS, corruptions  # noqa: E402
from tests.property.strategies import Config, configs  # noqa: E402

REFUSED = (LayoutError, TypeError)
# memory maps need a folder that outlives the example; the others are pure views
IN_MEMORY = sorted(k for k in TRANSFORMS if not k.startswith(("mmap", "memmap")))


class Finding(AssertionError):
    """numpyrnn did something an input should never make it do."""


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy
    check: Callable[[Any], None]


TARGETS: dict[str, Target] = {}


def target(name: str, strategy: st.SearchStrategy):
    def register(check):
        TARGETS[name] = Target(name, strategy, check)
        return check
    return register


# --------------------------------------------------------------------------------------
# inputs: a valid source, then up to three corruptions and awkward layouts, odd options
# --------------------------------------------------------------------------------------

@st.composite
def mutated_sources(draw, case: LayoutCase = BLOCK):
    cfg: Config = draw(configs())
    source = case.make_source(cfg)
    for _ in range(draw(st.integers(0, 3))):
        if not leaves(source):
            break
        source, _ = draw(corruptions(source))
    for path, value in leaves(source).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size and draw(st.booleans()):
            source = replace(source, path, TRANSFORMS[draw(st.sampled_from(IN_MEMORY))](value, Path("."))[0])
    options = cfg.options()
    if draw(st.integers(0, 9)) == 0:
        options["gates"] = draw(st.none() | st.text("rzniofgohcjux", max_size=5) | st.integers(-1, 3))
    if draw(st.integers(0, 19)) == 0:
        options["rowwise"] = draw(st.sampled_from([None, 0, 1, "yes", np.bool_(True)]))
    return case, cfg, source, options


def _quiet(fn):
    """Run ``fn`` and turn any warning into a finding."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "LSTM with projections is not supported with oneDNN")
        out = fn()
    if caught:
        raise Finding(f"warning: {caught[0].category.__name__}: {caught[0].message}")
    return out


def _finite(module) -> None:
    for name, p in module.named_parameters():
        if not torch.isfinite(p).all():
            raise Finding(f"{name} holds non-finite values after an accepted load")


def _cast(source, dtype):
    if isinstance(source, dict):
        return {k: _cast(v, dtype) for k, v in source.items()}
    if isinstance(source, (list, tuple)):
        return type(source)(_cast(v, dtype) for v in source)
    if source is None:
        return None
    if isinstance(source, torch.Tensor):
        source = source.numpy()
    return np.asarray(source).astype(dtype)


@target("load", mutated_sources())
def check_load(case_input) -> None:
    """``load_numpy`` into an existing module: refused cleanly and atomically, or loaded finite."""
    case, cfg, source, options = case_input
    module = cfg.torch_module()
    before = state_bits(module)
    custom = Config(cfg.spec, options.get("gates"), options.get("rowwise"), cfg.dtype, cfg.seed)
    try:
        _quiet(lambda: case.load_source(module, custom, source))
    except REFUSED:
        try:
            assert_state_identical(state_bits(module), before)
        except AssertionError as exc:
            raise Finding(f"a refused load changed the module: {exc}") from None
        return
    except Finding:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"{type(exc).__name__} escaped: {exc}") from exc
    _finite(module)


@target("build", mutated_sources())
def check_build(case_input) -> None:
    """``from_numpy``: refused cleanly, or a finite module that exports exactly its input."""
    case, cfg, source, options = case_input
    custom = Config(cfg.spec, options.get("gates"), options.get("rowwise"), cfg.dtype, cfg.seed)
    try:
        module = _quiet(lambda: case.from_source(custom, source))
    except REFUSED:
        return
    except Finding:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"{type(exc).__name__} escaped: {exc}") from exc
    _finite(module)
    try:
        assert_sources_identical(case.to_source(module, custom), _cast(source, cfg.dtype))
    except AssertionError as exc:
        raise Finding(f"accepted, but the module does not hold its input: {exc}") from None


# --------------------------------------------------------------------------------------
# file readers: HDF5 storage, links and compression; zip members of any ratio
# --------------------------------------------------------------------------------------

@st.composite
def h5_mutations(draw):
    """A generated HDF5 case, then possibly damaged bytes (a flip or a cut) of the file it makes."""
    case = draw(h5_cases())
    damage = draw(st.none() | st.tuples(st.sampled_from(["flip", "cut"]), st.integers(0, 1 << 14), st.integers(0, 7)))
    return case, damage


def _damage(path: Path, damage) -> None:
    """The file at ``path`` with one damage of :func:`_damaged` (a bit flipped, or cut short)."""
    if damage is not None:
        how, at, bit = damage
        path.write_bytes(_damaged(path.read_bytes(), [(how, at, bit, 1)]))


def _refused_only(fn) -> bool:
    """True when ``fn`` raised ``LayoutError``; a finding for anything else but success."""
    try:
        _quiet(fn)
    except LayoutError:
        return True
    except Finding:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Finding(f"{type(exc).__name__} escaped: {exc}") from exc
    return False


@target("h5", h5_mutations())
def check_h5(case_input) -> None:
    """Every HDF5 storage kind, link type and filter: data inside reads exactly, data elsewhere is refused."""
    case, damage = case_input
    with tempfile.TemporaryDirectory() as d:
        if damage is None:
            try:
                _quiet(lambda: check_h5_case(case, Path(d)))
            except AssertionError as exc:
                raise Finding(str(exc)) from None
            return
        folder = Path(d)
        if case["kind"] in ("filtered", "sparse"):  # written by their own helpers, checked undamaged
            return
        write_h5(folder / "m.weights.h5", case["kind"], case["var"], case["seed"], outside=folder / "other.h5")
        _damage(folder / "m.weights.h5", damage)
        if not _refused_only(lambda: files.read_keras(folder / "m.weights.h5")) and case["kind"] in OUTSIDE:
            raise Finding(f"{case} with {damage}: data stored outside the file was read")


@target("zip", zip_cases())
def check_zip(case) -> None:
    """Zip members (``.npz``, ``.keras``) of every compression ratio: refused exactly beyond the limits."""
    with tempfile.TemporaryDirectory() as d:
        try:
            _quiet(lambda: check_zip_case(case, Path(d)))
        except AssertionError as exc:
            raise Finding(str(exc)) from None


# --------------------------------------------------------------------------------------
# damaged bytes of a small valid file of every format numpyrnn reads
# --------------------------------------------------------------------------------------

DATA = ROOT / "tests" / "data"
_VALID: dict[str, tuple[dict[str, bytes], str]] = {}  # format -> ({file name: bytes}, the name to load)


def _valid_files() -> dict[str, tuple[dict[str, bytes], str]]:
    """Small valid files of every format whose writer is installed, written once per run: the block
    ``.npz`` (stored and compressed), numpyrnn's ``.safetensors`` and ``.pt``, ONNX, Keras 3
    ``.keras`` and ``.weights.h5``, a Flax ``.msgpack``, and from ``tests/data`` a paddle
    ``.pdparams``, a Keras 2 ``.h5`` and a TensorFlow checkpoint (index and shard)."""
    if _VALID:
        return _VALID
    import importlib.util
    import os

    import numpyrnn
    from numpyrnn import cli

    os.environ.setdefault("KERAS_BACKEND", "torch")
    with tempfile.TemporaryDirectory(prefix="numpyrnn-fuzz-") as d:  # their bytes are kept; the folder goes
        _write_valid(Path(d), numpyrnn, cli, importlib.util.find_spec)
    for fmt, name in (("pdparams", "paddle_params/lstm_proj_bidirect.pdparams"),
                      ("keras2-h5", "keras2_files/bi_cudnnlstm.h5")):
        if (DATA / name).exists():
            _VALID[fmt] = ({Path(name).name: (DATA / name).read_bytes()}, Path(name).name)
    shards = sorted((DATA / "tf_checkpoints").glob("cudnn_lstm_bidir.ckpt.*"))
    if shards:
        _VALID["tf-checkpoint"] = ({f.name: f.read_bytes() for f in shards}, "cudnn_lstm_bidir.ckpt")
    return _VALID


def _write_valid(folder: Path, numpyrnn: Any, cli: Any, find_spec: Any) -> None:
    """Write the valid files that numpyrnn and the installed frameworks make into ``folder``, and
    keep their bytes in ``_VALID``."""
    # the same block, torch, ONNX and Flax files every run, so a seed reproduces a finding there;
    # Keras draws its own initial weights, so its files differ from run to run
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = numpyrnn.NumpyGRU(3, 4, num_layers=2, bidirectional=True)
    arrays = {k: v for k, v in module.to_numpy().items() if v is not None}
    np.savez(folder / "w.npz", **arrays)
    np.savez_compressed(folder / "c.npz", **arrays)
    written = {"npz": "w.npz", "npz-compressed": "c.npz"}
    outputs = [("pt", "w.pt")]
    if find_spec("safetensors"):
        outputs.append(("safetensors", "w.safetensors"))
    for fmt, name in outputs:
        _quiet_cli(cli, ["convert", str(folder / "w.npz"), "-o", str(folder / name), "--cell", "gru"])
        written[fmt] = name
    if find_spec("onnx"):
        _quiet_cli(cli, ["export", str(folder / "w.pt"), "--to", "onnx", "--cell", "gru", "-o", str(folder / "w.onnx")])
        written["onnx"] = "w.onnx"
    if find_spec("keras") and find_spec("h5py"):
        import keras

        layers = [keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)) for _ in range(2)]
        model = keras.Sequential([keras.Input((None, 3)), *layers])
        model.save(folder / "m.keras")
        model.save_weights(folder / "m.weights.h5")
        written.update({"keras": "m.keras", "weights.h5": "m.weights.h5"})
    if find_spec("flax") and find_spec("jax"):
        import flax.linen as fnn
        import jax
        import jax.numpy as jnp
        from flax import serialization

        params = fnn.RNN(fnn.GRUCell(4)).init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 3)))
        (folder / "f.msgpack").write_bytes(serialization.to_bytes(params))
        written["flax"] = "f.msgpack"
    for fmt, name in written.items():
        _VALID[fmt] = ({name: (folder / name).read_bytes()}, name)


def _quiet_cli(cli: Any, argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        if cli.main(argv):
            raise RuntimeError(f"numpyrnn {' '.join(argv)} failed")


_DAMAGES = ("flip", "cut", "overwrite", "zero", "repeat")


@st.composite
def damaged_files(draw):
    """A format, one of its files, and one to four damages: a flipped bit, a cut, a run of bytes
    overwritten with one value or zeroed, a run repeated in place."""
    fmt = draw(st.sampled_from(sorted(_valid_files())))
    victim = draw(st.sampled_from(sorted(_valid_files()[fmt][0])))
    damages = draw(st.lists(st.tuples(st.sampled_from(_DAMAGES), st.integers(0, 1 << 20), st.integers(0, 255),
                                      st.integers(1, 64)), min_size=1, max_size=4))
    return fmt, victim, damages


def _damaged(data: bytes, damages) -> bytes:
    out = bytearray(data)
    for how, at, value, n in damages:
        if not out:
            break
        at %= len(out)
        if how == "flip":
            out[at] ^= 1 << (value % 8)
        elif how == "cut":
            del out[at:]
        elif how == "overwrite":
            out[at:at + n] = bytes([value]) * len(out[at:at + n])
        elif how == "zero":
            out[at:at + n] = bytes(len(out[at:at + n]))
        else:
            out[at:at] = out[at:at + n]
    return bytes(out)


@target("damage", damaged_files())
def check_damage(case) -> None:
    """Damaged bytes of a valid file: ``load_all`` reads finite modules or refuses with
    ``LayoutError``/``TypeError``; nothing else may escape (warnings are not findings here:
    the frameworks' readers may warn on a damaged file)."""
    import numpyrnn

    fmt, victim, damages = case
    sources, load = _valid_files()[fmt]
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for name, data in sources.items():
            (folder / name).write_bytes(_damaged(data, damages) if name == victim else data)
        err = io.StringIO()  # what CPython prints of an error it cannot raise (a C extension's misuse)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(err):
                warnings.simplefilter("ignore")
                modules = numpyrnn.load_all(folder / load)
        except REFUSED:
            modules = {}
        except Exception as exc:  # noqa: BLE001
            raise Finding(f"{fmt}: {victim} with {damages}: {type(exc).__name__} escaped: {exc}") from exc
        if "Error" in err.getvalue():
            raise Finding(f"{fmt}: {victim} with {damages}: printed {err.getvalue().strip()[:300]!r}")
        for module in modules.values():
            _finite(module)


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------

def _test_for(t: Target, examples: int, seed_value: int | None):
    test = given(t.strategy)(t.check)
    test = settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))(test)
    return hypothesis_seed(seed_value)(test) if seed_value is not None else test


def _prepare(names: list[str]) -> None:
    """Write what a target's strategy draws from before hypothesis runs (hypothesis forbids
    touching global random state inside a strategy, which the frameworks' writers do)."""
    if "damage" in names:
        _valid_files()


def run(seconds: float, names: list[str], seed_value: int | None, chunk: int, max_rounds: int | None = None) -> int:
    _prepare(names)
    stop = time.monotonic() + seconds
    counts = {n: 0 for n in names}
    rounds = 0
    while time.monotonic() < stop and (max_rounds is None or rounds < max_rounds):
        for name in names:
            s = None if seed_value is None else seed_value * 1_000_003 + rounds
            try:
                _test_for(TARGETS[name], chunk, s)()
            except Exception:  # noqa: BLE001 - a finding: hypothesis has shrunk and printed it
                traceback.print_exc()
                print(f"\nFINDING in target {name!r} (round {rounds}, seed {s}); see the example above.",
                      file=sys.stderr)
                return 1
            counts[name] += chunk
        rounds += 1
    total = ", ".join(f"{n}: {c}" for n, c in counts.items())
    print(f"no findings in {rounds} rounds ({total} examples; layouts: {', '.join(CASES)})")
    return 0


def run_atheris(names: list[str], argv: list[str]) -> int:
    import atheris  # optional; pip install atheris

    _prepare(names)
    tests = [_test_for(TARGETS[n], 1, None) for n in names]

    def one_input(data: bytes) -> None:
        for test in tests:
            test.hypothesis.fuzz_one_input(data)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    p.add_argument("--target", action="append", choices=sorted(TARGETS),
                   help="a target to fuzz (repeatable; default: all)")
    p.add_argument("--seed", type=int, default=None, help="make the run reproducible")
    p.add_argument("--chunk", type=int, default=100, help="examples per target between clock checks")
    p.add_argument("--rounds", type=int, default=None,
                   help="stop after this many rounds even if time is left (with --seed: a fixed set of cases)")
    p.add_argument("--atheris", action="store_true", help="coverage-guided with atheris; pass its flags after --")
    args, rest = p.parse_known_args(argv)
    torch.set_num_threads(1)
    names = args.target or sorted(TARGETS)
    if args.atheris:
        return run_atheris(names, [a for a in rest if a != "--"])
    if rest:
        p.error(f"unrecognised arguments: {' '.join(rest)}")
    return run(args.seconds, names, args.seed, args.chunk, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
