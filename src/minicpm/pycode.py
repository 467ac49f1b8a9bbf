"""Reading Python as it is being typed: open brackets and strings at the end of some text
(``scan``), a line's code without its comment, and whether code parses or is a valid start that
typing could complete (``parses``; IPython's ``%magic``, ``!cmd`` and ``obj?`` lines masked).
The inline completion's suggestion (completion.py) cuts and checks its text with these."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_CLOSERS = {"(": ")", "[": "]", "{": "}"}


@dataclass
class ScanState:
    """Open brackets and string at the end of some Python text."""

    brackets: list[str] = field(default_factory=list)
    quote: str | None = None  # the open string's quote (', ", ''' or """)


def scan(code: str) -> ScanState:
    """Brackets and strings, aware of comments and escapes (enough to know whether a newline
    ends a statement; the tokenizer would refuse incomplete code)."""
    st = ScanState()
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if st.quote:
            if c == "\\":
                i += 2
                continue
            if code.startswith(st.quote, i):
                i += len(st.quote)
                st.quote = None
                continue
            if c == "\n" and len(st.quote) == 1:
                st.quote = None  # an unterminated one-line string: a syntax error, move on
            i += 1
            continue
        if c == "#":
            j = code.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "'\"":
            st.quote = c * 3 if code.startswith(c * 3, i) else c
            i += len(st.quote)
            continue
        if c in "([{":
            st.brackets.append(c)
        elif c in ")]}" and st.brackets and _CLOSERS[st.brackets[-1]] == c:
            st.brackets.pop()
        i += 1
    return st


def code_part(line: str) -> str:
    """A line without its comment (strings taken into account)."""
    st = ScanState()
    for i, c in enumerate(line):
        if st.quote is None and c == "#":
            return line[:i]
        if c in "'\"" and st.quote in (None, c):
            st.quote = None if st.quote else c
    return line


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def is_header(line: str) -> bool:
    return code_part(line).rstrip().endswith(":")


_MAGIC = re.compile(r"^(\s*)([%!].*|.*\?\??\s*)$")


def _mask_ipython(code: str) -> str:
    """IPython-only lines (``%magic``, ``!cmd``, ``obj?``) become ``pass`` at their indent."""
    out = []
    for line in code.split("\n"):
        m = _MAGIC.match(line)
        stripped = line.strip()
        if m and stripped and (stripped[0] in "%!" or stripped.endswith("?")):
            out.append(m.group(1) + "pass")
        else:
            out.append(line)
    return "\n".join(out)


def _repairs(code: str) -> Iterator[str]:
    """``code`` and versions of it completed the way typing would go on: open strings and
    brackets closed, an opened block given a body, a ``try`` given its ``except``."""
    yield code
    st = scan(code)
    closed = code + (st.quote or "") + "".join(_CLOSERS[b] for b in reversed(st.brackets))
    if closed != code:
        yield closed
    lines = [ln for ln in closed.split("\n") if ln.strip()]
    if lines and is_header(lines[-1]):
        body = closed + "\n" + " " * (indent_of(lines[-1]) + 4) + "pass"
        yield body
        closed = body
    first = next((ln for ln in closed.split("\n") if ln.strip()), "")
    if first.strip().startswith("try:") or "try:" in closed:
        yield closed + "\nexcept Exception:\n    pass"
    for tail in ("_", " _", "\n    pass"):  # an expression or a block left just opened
        yield closed + tail


def parses(code: str) -> bool:
    """Does ``code`` parse as Python, or is it a valid start that typing could complete?
    A cell magic (``%%``) is not Python: accepted as is."""
    if code.lstrip().startswith("%%"):
        return True
    masked = _mask_ipython(code)
    for candidate in _repairs(masked):
        try:
            ast.parse(candidate)
            return True
        except (SyntaxError, ValueError):
            continue
    return False
