"""The documentation's runnable parts: each snippet on its own, and the block picture.

Every page as a whole, the quickstart included, runs in tests/docs/test_docs_run.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


snippets = _script("snippets")
PAGES = ["row-loop.md"]
CASES = [(page, i) for page in PAGES for i in range(len(snippets.pairs((DOCS / page).read_text())))]


def test_pages_have_snippets():
    assert len(CASES) >= 5  # one per defect of the row loop, and the fix


@pytest.mark.parametrize(("page", "index"), CASES)
def test_snippet_prints_what_the_page_shows(page, index):
    m = snippets.pairs((DOCS / page).read_text())[index]
    assert m.group("out").strip(), f"{page} snippet {index} has no recorded output"
    assert snippets.run(m.group("code")) == m.group("out"), (
        f"{page} snippet {index} now prints something else: run python docs/scripts/snippets.py docs/{page}")


def test_block_picture_script_draws(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    picture = _script("block_picture")
    monkeypatch.setattr(picture, "OUT", tmp_path / "blocks.png")
    picture.main()
    assert (tmp_path / "blocks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (DOCS / "img" / "blocks.png").exists()

