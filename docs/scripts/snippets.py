"""Run the Python snippets of a docs page and write (or check) their printed output.

A snippet is a fenced ``python`` block directly followed by a fenced ``text``
block: the text block is what the snippet prints. Each snippet runs on its
own, in a fresh namespace, so every one can be copied and run as is.

    python docs/scripts/snippets.py docs/row-loop.md           # rewrite the outputs
    python docs/scripts/snippets.py --check docs/row-loop.md   # exit 1 if an output is stale
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

PAIR = re.compile(r"```python\n(?P<code>(?:(?!```).)*)```\n\s*```text\n(?P<out>(?:(?!```).)*)```", re.S)


def pairs(text: str) -> list[re.Match]:
    """Every (snippet, output) pair of a page, in order."""
    return list(PAIR.finditer(text))


def run(code: str) -> str:
    """What ``code`` prints, run in a fresh namespace."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "<snippet>", "exec"), {"__name__": "__snippet__"})  # noqa: S102 - our own docs
    return buf.getvalue()


def render(text: str) -> str:
    """The page with every output block replaced by what its snippet prints now."""
    out, last = [], 0
    for m in pairs(text):
        out.append(text[last:m.start("out")])
        out.append(run(m.group("code")))
        last = m.end("out")
    out.append(text[last:])
    return "".join(out)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    status = 0
    for name in (a for a in argv if a != "--check"):
        path = Path(name)
        old = path.read_text()
        new = render(old)
        if check and new != old:
            print(f"{path}: printed output differs from the page; run python docs/scripts/snippets.py {path}")
            status = 1
        elif not check and new != old:
            path.write_text(new)
            print(f"updated {path}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
