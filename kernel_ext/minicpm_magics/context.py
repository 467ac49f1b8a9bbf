"""What the kernel knows about the notebook: In/Out, recent errors (``Err``), images shown, and
``{expr}`` interpolation. Everything is gathered from IPython events and hooks, so normal
traceback and output display are untouched."""

from __future__ import annotations

import base64
import re
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from minicpm.prompts import strip_ansi

MAX_ERRORS = 20
MAX_IMAGES = 20
NOTEBOOK_CHARS = 6000  # --context notebook: most recent cells first, up to this much source


@dataclass
class ErrorRecord:
    """One failed cell: its code and traceback (ANSI colours removed)."""

    execution_count: int
    code: str
    ename: str
    evalue: str
    traceback: str

    def __str__(self) -> str:
        return self.traceback


class ErrorLog:
    """``Err[n]``: the tracebacks of recent failed cells, by execution count (``Err[-1]`` is
    the latest). Filled by a ``post_run_cell`` event: IPython still prints the traceback
    itself, we only keep a copy."""

    def __init__(self, shell: Any, limit: int = MAX_ERRORS):
        self.shell = shell
        self.limit = limit
        self._records: OrderedDict[int, ErrorRecord] = OrderedDict()

    def post_run_cell(self, result: Any) -> None:
        err = result.error_in_exec or result.error_before_exec
        if err is None or isinstance(err, KeyboardInterrupt):
            return
        n = result.execution_count or 0
        code = getattr(result.info, "raw_cell", "") or ""
        self._records[n] = ErrorRecord(n, code, type(err).__name__, str(err),
                                       self._format(err))
        while len(self._records) > self.limit:
            self._records.popitem(last=False)

    def _format(self, err: BaseException) -> str:
        try:  # IPython's own rendering (skips its internal frames), then strip colours
            stb = self.shell.InteractiveTB.structured_traceback(
                type(err), err, err.__traceback__)
            return strip_ansi("\n".join(stb)).strip()
        except Exception:  # any IPython version quirk: plain Python formatting still works
            return "".join(traceback.format_exception(type(err), err, err.__traceback__)).strip()

    def __getitem__(self, n: int) -> ErrorRecord:
        if not self._records:
            raise KeyError("no cell has raised an error yet")
        if n < 0:
            return list(self._records.values())[n]
        return self._records[n]

    def __contains__(self, n: object) -> bool:
        return n in self._records

    def __len__(self) -> int:
        return len(self._records)

    def last(self) -> ErrorRecord | None:
        return next(reversed(self._records.values()), None)

    def keys(self) -> list[int]:
        return list(self._records)

    def __repr__(self) -> str:
        return f"<Err: errors in cells {self.keys()}>"


class ImageLog:
    """PNG/JPEG images the kernel displayed, by execution count. Inline matplotlib closes
    figures after each cell, so ``%minicpm image`` needs this record to see "the last plot"."""

    def __init__(self, shell: Any, limit: int = MAX_IMAGES):
        self.shell = shell
        self.limit = limit
        self._images: OrderedDict[int, tuple[str, bytes]] = OrderedDict()

    def hook(self, msg: dict[str, Any]) -> dict[str, Any]:
        """ipykernel display-publisher hook: note the image, pass the message on unchanged."""
        try:
            data = msg.get("content", {}).get("data", {})
            for mime in ("image/png", "image/jpeg"):
                if mime in data:
                    n = int(self.shell.execution_count)
                    self._images[n] = (mime, base64.b64decode(data[mime]))
                    while len(self._images) > self.limit:
                        self._images.popitem(last=False)
                    break
        except Exception:  # never break display over bookkeeping
            pass
        return msg

    def get(self, n: int) -> tuple[str, bytes] | None:
        return self._images.get(n)

    def last(self) -> tuple[str, bytes] | None:
        return next(reversed(self._images.values()), None)


# --- interpolation ----------------------------------------------------------------------------
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}\n]+)\}")


def interpolate(text: str, namespace: dict[str, Any]) -> str:
    """Replace ``{expr}`` with ``str(eval(expr))`` in the user's namespace; ``{{``/``}}`` escape.
    A field that does not evaluate stays as written: questions about code contain braces."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        try:
            return str(eval(m.group(1), namespace))  # noqa: S307 - the user's own kernel
        except Exception:
            return m.group(0)

    return _FIELD.sub(sub, text)


# --- context parts (minicpm.prompts format) ---------------------------------------------------
def _is_own_magic(src: str) -> bool:
    s = src.lstrip()
    return s.startswith(("%minicpm", "%%minicpm", "get_ipython().run_line_magic('minicpm'",
                         "get_ipython().run_cell_magic('minicpm'"))


def cell_parts(shell: Any, n: int, errors: ErrorLog, label: str | None = None
               ) -> list[dict[str, Any]]:
    """Cell n's source, its output (Out[n]) and its error, as context parts."""
    history = shell.user_ns.get("In", [])
    if not 0 < n < len(history):
        raise LookupError(f"there is no cell In[{n}] (cells run so far: 1..{len(history) - 1})")
    label = label or f"cell [{n}]"
    parts: list[dict[str, Any]] = [{"kind": "cell", "label": label, "text": history[n],
                                    "language": "python"}]
    out = shell.user_ns.get("Out", {})
    if n in out:
        parts.append({"kind": "output", "label": label, "text": repr(out[n])[:2000]})
    if n in errors:
        parts.append({"kind": "error", "label": label, "text": errors[n].traceback})
    return parts


def last_cell_number(shell: Any) -> int | None:
    """The latest cell before the current one that is not one of our own magics."""
    history = shell.user_ns.get("In", [])
    # history[-1] is the cell running now.
    for n in range(len(history) - 2, 0, -1):
        if history[n].strip() and not _is_own_magic(history[n]):
            return n
    return None


def notebook_parts(shell: Any, errors: ErrorLog) -> list[dict[str, Any]]:
    """The session's cells (newest first until NOTEBOOK_CHARS), shown oldest first."""
    history = shell.user_ns.get("In", [])
    picked: list[str] = []
    used = 0
    for n in range(len(history) - 2, 0, -1):
        src = history[n]
        if not src.strip() or _is_own_magic(src):
            continue
        block = f"# In[{n}]\n{src.rstrip()}"
        if n in errors:
            block += f"\n# -> raised {errors[n].ename}: {errors[n].evalue}"
        if used + len(block) > NOTEBOOK_CHARS:
            break
        picked.append(block)
        used += len(block)
    if not picked:
        return []
    return [{"kind": "notebook", "label": "the notebook so far",
             "text": "\n\n".join(reversed(picked)), "language": "python"}]
