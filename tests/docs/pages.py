"""Read the runnable blocks of a Markdown page, and compare printed output with the page.

The conventions a page follows (see CONTRIBUTING.md, "Documentation"):

- A fenced ``python`` block runs. The blocks of one page run in order, in one
  namespace, in a fresh empty folder: a page creates every file it uses.
- A ``python`` block whose lines start with ``>>>`` is a doctest; it runs in the
  same namespace and its outputs are checked by doctest.
- A fenced ``text`` block directly after a ``python`` block (blank lines only
  in between) is what that block prints; it is checked.
- A fenced ``console`` block (or a ``bash`` block whose commands carry the
  ``$ `` prompt) holds commands, each after ``$ ``, each followed by its
  output, which is checked. The commands run with bash in the page's folder,
  after the ``python`` blocks above them; ``numpyrnn`` and ``python`` are this
  checkout's. A command that exits with another code than 0 fails the page,
  unless its output ends with the line ``[exit N]``: then it must exit with N.
- A block whose first line is ``# needs: NAME, ...`` (``>>> # needs: ...`` in a
  doctest) runs only where each NAME is available, and is skipped otherwise:
  ``cuda`` (a CUDA device), ``cuda:N`` (at least N of them), anything else is a
  module to import, and the skip names the extra that installs it.
- Outputs are compared with whitespace runs made one space, and ``...`` stands
  for any text (timings, addresses, sizes that vary).
- ``bash`` blocks without prompts (install lines), ``text`` blocks elsewhere and
  other languages are prose: never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
NEEDS = re.compile(r"^(?:>>>\s*)?#\s*needs:\s*(?P<names>.+?)\s*$")
PROMPT = "$ "


@dataclass
class Block:
    """One fenced block of a page."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    expected: str | None = None  # the output block that follows a python block
    needs: list[str] = field(default_factory=list)

    @property
    def doctest(self) -> bool:
        return self.code.lstrip().startswith(">>>")

    @property
    def runs(self) -> bool:
        return self.lang in ("python", "py", "console")


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, in order; the output blocks attached to their code."""
    lines = text.split("\n")
    found: list[Block] = []
    i = 0
    gap_ok = False  # only blank lines since the last python block closed
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                gap_ok = False
            i += 1
            continue
        indent, fence, lang = len(m.group("indent")), m.group("fence"), m.group("lang").lower()
        body, j = [], i + 1
        while j < len(lines):
            close = FENCE.match(lines[j])
            if close and close.group("fence").startswith(fence[0] * len(fence)) and not close.group("lang"):
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
            j += 1
        code = "\n".join(body) + "\n"
        if lang in ("bash", "sh", "shell", "shell-session") and any(
                b.startswith(PROMPT) for b in body if b.strip() and not b.lstrip().startswith("#")):
            lang = "console"  # a session with prompts runs; plain install lines stay prose
        previous = found[-1] if found else None
        if lang == "text" and gap_ok and previous is not None and previous.lang in ("python", "py") \
                and not previous.doctest and previous.expected is None:
            previous.expected = code
        else:
            first = next((b for b in body if b.strip()), "")
            n = NEEDS.match(first.strip())
            needs = [x.strip() for x in n.group("names").split(",") if x.strip()] if n else []
            found.append(Block(lang, code, i + 1, needs=needs))
        gap_ok = lang in ("python", "py")
        i = j + 1
    return found


def commands(code: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block; ``\\`` continues a command."""
    pairs: list[tuple[str, list[str]]] = []
    lines = code.rstrip("\n").split("\n")
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith(PROMPT):
            cmd = line[len(PROMPT):]
            while cmd.endswith("\\") and k + 1 < len(lines):
                k += 1
                cmd = cmd[:-1] + " " + lines[k].strip()
            pairs.append((cmd, []))
        elif pairs:
            pairs[-1][1].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            raise ValueError(f"console block: {line!r} comes before the first '$ ' command")
        k += 1
    return [(cmd, "\n".join(out)) for cmd, out in pairs]


EXIT = re.compile(r"\n?\[exit (?P<code>\d+)\]\s*$")


def exit_code(expected: str) -> tuple[str, int]:
    """The output a command must print and the code it must exit with (``[exit N]`` last, else 0)."""
    m = EXIT.search(expected)
    return (expected[:m.start()], int(m.group("code"))) if m else (expected, 0)


def _squash(s: str) -> str:
    return " ".join(s.split())


# A float32 rounding error as a page shows it (e.g. 3.44e-06): its last digits depend on which
# SIMD kernels the CPU runs, so the page's figure stands for any error of at most 1e-5.
_ANY_ROUNDING = r"(?:\d\.\d\de-(?:0[6-9]|[1-9]\d)|1\.00e-05)"
_ROUNDING = re.compile(_ANY_ROUNDING)  # a larger figure (2.50e-05, say) must match as written


def matches(expected: str, actual: str) -> bool:
    """``actual`` equals ``expected`` up to whitespace runs, with ``...`` matching any text and a
    float32 rounding error (``d.dde-0N``, at most 1e-5) matching any other such error."""
    def piece(text: str) -> str:
        parts = _ROUNDING.split(text)
        return _ANY_ROUNDING.join(re.escape(part) for part in parts)

    pieces = [piece(_squash(p)) for p in _squash(expected).split("...")]
    pattern = r"\s*.*?\s*".join(pieces)
    return re.fullmatch(pattern, _squash(actual), re.S) is not None
