"""Parsing ``%minicpm`` / ``%%minicpm`` lines into a :class:`Request`.

Only leading ``--options`` are parsed; the rest of the line is kept verbatim, because questions
contain apostrophes and braces that a shell-style split would mangle."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("markdown", "code", "text", "json")
CONTEXTS = ("none", "cell", "notebook", "vars")  # --context takes one or a comma list

# option name → (Request field, converter or None for a flag)
_VALUED: dict[str, tuple[str, Any]] = {
    "--model": ("model", str),
    "--temperature": ("temperature", float),
    "--top-p": ("top_p", float),
    "--max-tokens": ("max_tokens", int),
    "--seed": ("seed", int),
    "--system": ("system", str),
    "--format": ("format", str),
    "--context": ("context", str),
    "--vars": ("vars", str),
}
_FLAGS: dict[str, str] = {"--no-stream": "no_stream", "--no-interpolate": "no_interpolate"}
OPTION_NAMES = tuple(_VALUED) + tuple(_FLAGS)

# Sub-commands, with how many arguments they take: questions that merely start with one of these
# words ("explain recursion to me") stay questions.
SUBCOMMANDS = ("ask", "explain", "fix", "image", "models", "use", "status", "reset", "history",
               "help", "chat", "apply")

_TOKEN = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S+)""")


class MagicUsageError(Exception):
    """Bad input from the user: shown as a short message, never as a traceback."""


@dataclass
class Request:
    """One parsed magic invocation."""

    command: str = "ask"  # one of SUBCOMMANDS
    arg: str = ""  # the question, or the sub-command's argument
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    system: str | None = None
    format: str = "markdown"
    context: str = "none"
    vars: str = ""  # --vars df,model: variables to describe (each up to one DataFrame's budget)
    no_stream: bool = False
    no_interpolate: bool = False
    instruction: str | None = None  # %%minicpm explain/fix/image: the body replaces the default
    given: set[str] = field(default_factory=set)  # option fields set explicitly

    @property
    def contexts(self) -> set[str]:
        return {c for c in self.context.split(",") if c and c != "none"}

    @property
    def var_names(self) -> list[str]:
        return [n.strip() for n in self.vars.split(",") if n.strip()]

    def sampling(self) -> dict[str, Any]:
        """Only what the user set, so engine/server defaults apply otherwise."""
        names = ("temperature", "top_p", "max_tokens", "seed")
        return {n: getattr(self, n) for n in names if n in self.given}


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == tok[-1] and tok[0] in "\"'":
        return shlex.split(tok)[0]
    return tok


def parse_line(line: str) -> tuple[Request, str]:
    """Leading options → Request; returns it with the rest of the line (verbatim)."""
    req = Request()
    pos = 0
    while True:
        m = _TOKEN.match(line, pos)
        if not m or not m.group(1).startswith("--"):
            break
        tok, pos = m.group(1), m.end()
        if tok == "--":  # explicit end of options
            break
        name, eq, inline = tok.partition("=")
        if name in _FLAGS:
            if eq:
                raise MagicUsageError(f"{name} takes no value")
            setattr(req, _FLAGS[name], True)
            req.given.add(_FLAGS[name])
            continue
        if name not in _VALUED:
            raise MagicUsageError(
                f"unknown option {name}; options are: {', '.join(OPTION_NAMES)} "
                "(see %minicpm help)")
        attr, conv = _VALUED[name]
        if eq:
            raw = inline
        else:
            m = _TOKEN.match(line, pos)
            if not m:
                raise MagicUsageError(f"{name} needs a value")
            raw, pos = m.group(1), m.end()
        raw = _unquote(raw)
        try:
            value = conv(raw)
        except ValueError:
            kind = "a number" if conv is float else "an integer"
            raise MagicUsageError(f"{name} needs {kind}, got {raw!r}") from None
        setattr(req, attr, value)
        req.given.add(attr)
    _check(req)
    return req, line[pos:].strip()


def _check(req: Request) -> None:
    if req.format not in FORMATS:
        raise MagicUsageError(f"--format must be one of {', '.join(FORMATS)}, got {req.format!r}")
    parts = req.context.split(",")
    if not all(p in CONTEXTS for p in parts) or {"cell", "notebook"} <= set(parts):
        raise MagicUsageError(
            f"--context must be one of {', '.join(CONTEXTS)} (or a comma list like cell,vars), "
            f"got {req.context!r}")
    bad = [n for n in req.var_names if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", n)]
    if bad:
        raise MagicUsageError(f"--vars takes variable names separated by commas, got {bad[0]!r}")
    if req.temperature is not None and not 0.0 <= req.temperature <= 5.0:
        raise MagicUsageError(f"--temperature must be between 0 and 5, got {req.temperature}")
    if req.top_p is not None and not 0.0 < req.top_p <= 1.0:
        raise MagicUsageError(f"--top-p must be in (0, 1], got {req.top_p}")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise MagicUsageError(f"--max-tokens must be at least 1, got {req.max_tokens}")


def split_command(rest: str) -> tuple[str, str]:
    """The sub-command a line names, or ("ask", rest) when it is a question."""
    word, _, tail = rest.partition(" ")
    word_l, tail = word.lower(), tail.strip()
    if word_l == "ask":
        return "ask", tail
    if word_l in ("models", "status", "reset", "history", "help", "chat", "fix", "apply") \
            and not tail:
        return word_l, ""
    if word_l == "fix" and tail == "--apply":  # fix_apply.py: a diff, then the user applies it
        return "fix", tail
    if word_l == "explain" and (not tail or re.fullmatch(r"-?\d+|In\[-?\d+\]", tail)):
        return "explain", tail
    if word_l == "use" and tail and " " not in tail:
        return "use", _unquote(tail)
    if word_l == "image" and (not tail or " " not in tail):
        return "image", tail
    return "ask", rest


def parse(line: str, cell: str | None = None) -> Request:
    """``%minicpm LINE`` or ``%%minicpm LINE`` + CELL → Request."""
    req, rest = parse_line(line)
    command, arg = split_command(rest) if rest else ("ask", "")
    if cell is not None:
        body = cell.strip()
        if command == "ask":
            if arg:
                raise MagicUsageError(
                    f"unexpected text after the options: {arg!r}; with %%minicpm the question "
                    "goes in the cell body")
            arg = body
        elif body:
            # explain/fix/image: the body replaces the default instruction.
            req.instruction = body
    req.command, req.arg = command, arg
    if req.command == "ask" and not req.arg:
        raise MagicUsageError("nothing to ask: write a question, e.g. %minicpm What is a "
                              "list comprehension?  (%minicpm help lists everything)")
    return req


_LINE_MAGIC = re.compile(r"^(\s*)%minicpm\b(.*?)\?(\s*)$")


def keep_question_marks(lines: list[str]) -> list[str]:
    """IPython input transformer: ``%minicpm Why?`` would otherwise become ``pinfo`` (IPython
    reads a trailing ``?`` as a help request). Such lines are rewritten to the explicit call."""
    out = []
    for line in lines:
        m = _LINE_MAGIC.match(line.rstrip("\n"))
        if m and not line.lstrip().startswith("%%"):
            call = f"get_ipython().run_line_magic('minicpm', {(m.group(2).strip() + '?')!r})"
            line = m.group(1) + call + ("\n" if line.endswith("\n") else "")
        out.append(line)
    return out
