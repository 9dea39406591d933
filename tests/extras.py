"""Which optional extra installs a package, and a skip that says so.

The extras are read from ``pyproject.toml``, so a package added to an extra
there is named correctly here without a second list to keep in step.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@cache
def extras() -> dict[str, str]:
    """Package name (lower case, ``-`` as ``_``) -> the smallest extra of pyproject.toml that lists it."""
    text = PYPROJECT.read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    listed: dict[str, list[str]] = {}
    for extra, body in re.findall(r"^(\w[\w-]*)\s*=\s*\[(.*?)\]\s*$", section, re.M | re.S):
        names = [re.split(r"[\[<>=!~;\s]", req, maxsplit=1)[0].lower().replace("-", "_")
                 for req in re.findall(r'"([^"]+)"', body)]
        listed[extra] = [n for n in names if n != "numpyrnn"]
    found: dict[str, str] = {}
    for extra in sorted(listed, key=lambda e: len(listed[e])):
        for name in listed[extra]:
            found.setdefault(name, extra)
    return found


def install_hint(module: str) -> str:
    """The pip command that installs ``module``'s package, e.g. ``pip install "numpyrnn[interop]"``."""
    top = module.split(".")[0].lower()
    extra = extras().get(top)
    return f'pip install "numpyrnn[{extra}]"' if extra else f"pip install {top}"


def needs(module: str) -> ModuleType:
    """``module``, imported, or a skip naming the extra that installs it."""
    __tracebackhide__ = True  # the skip is reported at the test that asked
    return pytest.importorskip(module, reason=f"needs {module}: {install_hint(module)}")
