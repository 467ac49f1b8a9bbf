"""``%load_ext minicpm`` and ``%minicpm What does this do?`` in the same first cell.

IPython transforms a whole cell before running any of it, so when the extension loads, its
``?`` rule (options.keep_question_marks) is registered too late for the rest of that cell:
the question line has already become ``get_ipython().run_line_magic('pinfo', 'do')`` and would
print "Object `do` not found.". While that one cell runs, calls to ``pinfo``/``pinfo2`` whose
target is the last word of a pending ``%minicpm …?`` line of the raw cell run that line as a
question instead; other calls (``len?``) go to IPython's own help. Restored after the cell.

A question whose end IPython cannot read as a name (``%minicpm Why f(x)?``) fails with a
SyntaxError before the cell runs at all; only loading the extension from the IPython config
(``c.InteractiveShellApp.extensions = ["minicpm"]``) or an earlier cell avoids that."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from .options import _LINE_MAGIC

# IPython's own rule for the name before a trailing ? (inputtransformer2._help_end_re)
_HELP_END = re.compile(r"(%{0,2}(?!\d)[\w*]+(?:\.(?!\d)[\w*]+|\[-?[0-9]+\])*)(\?\??)$")
_LOAD = re.compile(r"^\s*%load_ext\s+minicpm(_magics)?\b")


def _current_raw_cell(shell: Any) -> str | None:
    """The raw text of the cell running now: stored before it runs when history is on (IPython
    9 has counted it already, IPython 8 counts it after), with the %load_ext line in it."""
    hist = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    n = getattr(shell, "execution_count", None)
    if not hist or n is None or len(hist) not in (n, n + 1):
        return None  # not stored (a silent run): nothing to rescue
    raw = hist[-1]
    return raw if any(_LOAD.match(line) for line in raw.splitlines()) else None


def pending_questions(raw: str) -> list[tuple[str, str, str]]:
    """(help magic, its target, the %minicpm argument) per ``%minicpm …?`` line after the
    ``%load_ext`` line."""
    lines = raw.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if _LOAD.match(line)), len(lines))
    out = []
    for line in lines[start:]:
        m = _LINE_MAGIC.match(line)
        h = _HELP_END.search(line.rstrip())
        if not m or not h or not m.group(2).strip() or line.lstrip().startswith("%%"):
            continue  # (``%minicpm?`` alone is IPython's help for the magic: left alone)
        target, esc = h.group(1), h.group(2)
        method = "pinfo2" if esc == "??" else "psearch" if "*" in target else "pinfo"
        out.append((method, target, m.group(2).strip() + "?"))
    return out


class QuestionRescue:
    """Swaps IPython's help magics for the rest of the current cell (see the module doc)."""

    def __init__(self, shell: Any, questions: list[tuple[str, str, str]]):
        self.shell = shell
        self.pending = deque(questions)
        self.table = shell.magics_manager.magics["line"]
        # resolved first: IPython 9 keeps lazy placeholders in the table, which would replace
        # our wrapper with the real magic when first called
        found = {name: shell.find_line_magic(name) for name in ("pinfo", "pinfo2", "psearch")}
        self.saved = {name: fn for name, fn in found.items() if fn is not None}
        for name in self.saved:
            self.table[name] = self._wrap(name)
        shell.events.register("post_run_cell", self.restore)

    def _wrap(self, name: str) -> Any:
        original = self.saved[name]

        def help_or_question(parameter_s: str = "", *args: Any, **kwargs: Any) -> Any:
            if self.pending and self.pending[0][:2] == (name, parameter_s.strip()):
                _, _, question = self.pending.popleft()
                return self.shell.run_line_magic("minicpm", question)
            return original(parameter_s, *args, **kwargs)

        return help_or_question

    def restore(self, result: Any = None) -> None:
        for name, fn in self.saved.items():
            self.table[name] = fn
        self.shell.events.unregister("post_run_cell", self.restore)


def rescue_first_cell(shell: Any) -> None:
    """Called while ``%load_ext`` runs: protect the ``%minicpm …?`` lines after it."""
    try:
        raw = _current_raw_cell(shell)
        questions = pending_questions(raw) if raw else []
        if questions:
            QuestionRescue(shell, questions)
    except Exception:  # a convenience: never make loading the extension fail
        pass
