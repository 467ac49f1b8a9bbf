"""``%minicpm fix --apply``: the model's fix as a diff of the failed cell, applied only when the
user says so.

A kernel cannot edit another cell, and nothing may change or run without the user's action. So
the fix's diff is shown (text, no live HTML), and a new cell below is pre-filled with
``%minicpm apply``: running that cell (the user's click or Shift+Enter) turns it into the fixed
code, which is not run. Without a code block in the answer there is nothing to apply.
"""

from __future__ import annotations

import difflib
from typing import Any

from IPython.display import display

from .options import MagicUsageError
from .render import extract_code

APPLY = "%minicpm apply"


def unified_diff(before: str, after: str, label: str) -> str:
    """The failed cell → the fix, as unified diff lines ('-' removed, '+' added)."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(),
                                 f"{label} (failed)", f"{label} (fixed)", lineterm="")
    return "\n".join(lines)


def _fenced(text: str, lang: str) -> str:
    """A Markdown code block that the text cannot close early (a longer fence than any run of
    backticks inside)."""
    ticks = "`" * max(3, _longest_backticks(text) + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"


def _longest_backticks(text: str) -> int:
    best = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        best = max(best, run)
    return best


class PendingFix:
    """The last fix offered with --apply; ``%minicpm apply`` takes it once."""

    def __init__(self) -> None:
        self.code: str | None = None
        self.label = ""

    def offer(self, shell: Any, answer: str, before: str, label: str) -> None:
        after = extract_code(answer) if "```" in answer else ""
        if not after.strip():
            self.code = None
            print(f"%minicpm: the answer has no code block, so there is nothing to apply to {label}")
            return
        diff = unified_diff(before, after, label)
        if not diff:
            self.code = None
            print(f"%minicpm: the fix is the same code as {label}: nothing to apply")
            return
        self.code, self.label = after, label
        note = (f"Run the `{APPLY}` cell below to put this fix in its place (the code is not "
                f"run); delete that cell to keep {label} as it is.")
        display({"text/plain": f"{diff}\n\n{note}",
                 "text/markdown": f"{_fenced(diff, 'diff')}\n\n{note}"}, raw=True)
        shell.set_next_input(f"{APPLY}  # replaces this cell with the fix of {label} shown above",
                             replace=False)

    def apply(self, shell: Any) -> None:
        if self.code is None:
            raise MagicUsageError("no fix to apply: run %minicpm fix --apply first (the fix it "
                                  "shows can be applied once)")
        code, self.code = self.code, None
        shell.set_next_input(code, replace=True)  # this cell becomes the fix; nothing runs
        print(f"%minicpm: this cell now holds the fix of {self.label}; run it when ready")
