"""README.md and every docs page run as written: one test per page.

Each page's ``python`` and ``console`` blocks run in order, in one namespace, in
a fresh empty folder; printed outputs shown on the page are checked. The
conventions are in ``tests/docs/pages.py``; pages added to ``docs/`` are picked
up without a change here.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ..extras import install_hint
from . import pages

ROOT = Path(__file__).resolve().parents[2]
PAGES = [p for p in (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))
         if any(b.runs for b in pages.blocks(p.read_text(encoding="utf-8")))]


#: Modules whose package has another name (the extras list packages).
DISTRIBUTIONS = {"paddle": "paddlepaddle"}


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def unmet(needs: list[str]) -> list[str]:
    """Why each of ``needs`` is not available here (empty: the block runs)."""
    why = []
    for name in needs:
        if name == "cuda" or name.startswith("cuda:"):
            want = int(name.split(":")[1]) if ":" in name else 1
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if have < want:
                why.append(f"needs {want} CUDA device(s), found {have}")
        else:
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:  # a parent package is missing
                found = False
            if not found:
                why.append(f"needs {name}: {install_hint(DISTRIBUTIONS.get(name, name))}")
    return why


def _diff(expected: str, actual: str) -> str:
    return f"--- the page shows:\n{expected.rstrip()}\n--- it printed:\n{actual.rstrip()}"


def _shims(folder: Path) -> dict[str, str]:
    """An environment whose ``python`` and ``numpyrnn`` are this interpreter and this checkout."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    for name, line in (("python", f'exec "{sys.executable}" "$@"'),
                       ("numpyrnn", f'exec "{sys.executable}" -m numpyrnn "$@"')):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{line}\n")
        shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("KERAS_BACKEND", "torch")
    return env


def run_python(block: pages.Block, namespace: dict, where: str) -> None:
    if block.doctest:
        test = doctest.DocTestParser().get_doctest(block.code, namespace, where, where, block.line)
        report = io.StringIO()
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
        runner.run(test, out=report.write, clear_globs=False)
        assert runner.failures == 0, f"{where}: the doctest fails\n{report.getvalue()}"
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - the project's own docs
    except Exception as exc:
        raise AssertionError(f"{where}: the block raises {type(exc).__name__}: {exc}") from exc
    if block.expected is not None:
        assert pages.matches(block.expected, printed.getvalue()), (
            f"{where}: prints something else than the page shows\n{_diff(block.expected, printed.getvalue())}")


def run_console(block: pages.Block, env: dict[str, str], folder: Path, where: str) -> None:
    for cmd, expected in pages.commands(block.code):
        assert not re.match(r"(python3? -m )?pip\b", cmd), (
            f"{where}: `{cmd}` installs packages; put install lines in a bash block")
        done = subprocess.run(["bash", "-c", cmd], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
        shown = done.stdout + done.stderr
        expected, code = pages.exit_code(expected)
        assert done.returncode == code, f"{where}: `{cmd}` exited with {done.returncode}, not {code}\n{shown}"
        if expected.strip():
            assert pages.matches(expected, shown), f"{where}: `{cmd}` prints something else\n{_diff(expected, shown)}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_page_runs_as_written(page, tmp_path, monkeypatch):
    runnable = [b for b in pages.blocks(page.read_text(encoding="utf-8")) if b.runs]
    monkeypatch.chdir(tmp_path)
    env = _shims(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    skipped = []
    environ, dtype = dict(os.environ), torch.get_default_dtype()
    try:
        with warnings.catch_warnings():  # a page may change the filters, the environment, the default dtype
            for block in runnable:
                where = f"{_id(page)}:{block.line}"
                why = unmet(block.needs)
                if block.lang == "console" and shutil.which("bash") is None:
                    why.append("needs bash to run its commands")
                if why:
                    skipped.append(f"{where} {'; '.join(why)}")
                    continue
                if block.lang == "console":
                    run_console(block, env, tmp_path, where)
                else:
                    run_python(block, namespace, where)
    finally:
        os.environ.clear()
        os.environ.update(environ)
        torch.set_default_dtype(dtype)
    if skipped:
        pytest.skip(f"ran {len(runnable) - len(skipped)} of {len(runnable)} blocks; skipped " + ", ".join(skipped))


def test_every_page_with_code_is_run():
    assert {"README.md", "docs/index.md", "docs/cli.md", "docs/finetuning.md", "docs/frameworks/onnx.md",
            "docs/safety.md"} <= {_id(p) for p in PAGES}


def test_conventions_are_read_as_documented():
    text = "\n".join([
        "```python", "# needs: cuda, keras", "x = 1", "```", "", "```text", "1", "```",
        "prose", "```text", "not an output", "```",
        "  ```python", "  >>> 1 + 1", "  2", "  ```",
        "```console", "$ numpyrnn --help \\", "   | head -1", "usage: ...", "$ true", "```",
        "```bash", "pip install .", "```", "```bash", "# a session", "$ numpyrnn demo", "```",
    ])
    found = pages.blocks(text)
    assert [(b.lang, b.line) for b in found] == [("python", 1), ("text", 10), ("python", 13), ("console", 17),
                                                 ("bash", 23), ("console", 26)]
    assert found[0].needs == ["cuda", "keras"] and found[0].expected == "1\n"
    assert found[1].expected is None and found[2].doctest and found[2].code == ">>> 1 + 1\n2\n"
    assert pages.commands(found[3].code) == [("numpyrnn --help  | head -1", "usage: ..."), ("true", "")]
    assert pages.exit_code("error: no\n[exit 1]\n") == ("error: no", 1)
    assert pages.exit_code("[exit 2]") == ("", 2) and pages.exit_code("ok\n") == ("ok\n", 0)
    assert pages.matches("load  time 1.17 ms\n", "load time   1.17 ms")
    assert pages.matches("load time ... ms", "load time 3.20 ms")
    assert not pages.matches("load time 1.17 ms", "load time 3.20 ms")
    assert unmet(["cuda:100000"]) and unmet(["no_such_module_here"]) == [
        "needs no_such_module_here: pip install no_such_module_here"]
    if importlib.util.find_spec("paddle") is None:
        assert unmet(["paddle"]) == ['needs paddle: pip install "numpyrnn[tf-era]"']
