"""docs/models.md shows real output: rebuild its encoder-decoder file and compare."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import numpyrnn

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _block(after: str) -> str:
    page = (DOCS / "models.md").read_text()
    m = re.search(re.escape(after) + r"\n(.*?)```", page, re.S)
    assert m, after
    return m.group(1)


def test_the_pages_output_is_what_numpyrnn_prints(tmp_path, capsys, monkeypatch):
    pytest.importorskip("keras")
    spec = importlib.util.spec_from_file_location("docs_seq2seq", DOCS / "scripts" / "seq2seq.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    path = script.main(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    modules = numpyrnn.load_all(path.name)
    assert _block(">>> modules").strip() == repr(modules)
    from numpyrnn.cli import main

    assert main(["inspect", path.name]) == 0
    assert capsys.readouterr().out == _block("$ numpyrnn inspect seq2seq.keras")
    assert main(["convert", path.name, "-o", "seq2seq.safetensors"]) == 0
    out = re.sub(r"\d+\.\d\d s", "T s", capsys.readouterr().out)
    assert out == re.sub(r"\d+\.\d\d s", "T s", _block("$ numpyrnn convert seq2seq.keras -o seq2seq.safetensors"))
    assert repr(numpyrnn.load("seq2seq.safetensors", layer="decoder")) == \
        _block('>>> numpyrnn.load("seq2seq.safetensors", layer="decoder")').strip()
    assert main(["convert", path.name, "-o", "x.pt", "--cell", "gru"]) == 1
    assert capsys.readouterr().err == _block("$ numpyrnn convert seq2seq.keras -o x.pt --cell gru")
