"""Showing answers: a display that grows in place while tokens stream, and the post-processing
for ``--format code`` (first code block) and ``--format json`` (parsed object)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from IPython.display import display

from .safe_markdown import SafeMarkdown

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


class StreamingDisplay:
    """One output area, updated as deltas arrive (``display_data`` then ``update_display_data``).

    Updates are throttled to ``interval`` seconds: every token would flood the frontend."""

    def __init__(self, fmt: str = "markdown", interval: float = 0.1, stream: bool = True):
        self.fmt = fmt
        self.interval = interval
        self.stream = stream
        self.text = ""
        self._handle: Any = None
        self._last = 0.0

    def _obj(self, text: str, footer: str = "") -> Any:
        if self.fmt in ("text", "json"):
            body = text + (f"\n\n[{footer}]" if footer else "")
            return _Plain(body)
        return SafeMarkdown(text, footer)  # model output: safe HTML + text/plain, see there

    def show(self, text: str, footer: str = "") -> None:
        if self._handle is None:
            self._handle = display(self._obj(text, footer), display_id=True)
        else:
            self._handle.update(self._obj(text, footer))

    def add(self, delta: str) -> None:
        self.text += delta
        now = time.monotonic()
        if self.stream and (self._handle is None or now - self._last >= self.interval):
            self._last = now
            self.show(self.text or "…")

    def start(self, placeholder: str = "…") -> None:
        """Show something at once: the model may take a while to load or prefill."""
        if self.stream:
            self.show(placeholder)

    def finish(self, footer: str = "") -> None:
        self.show(self.text, footer)


class _Plain:
    """text/plain only (``--format text``): no Markdown rendering."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)


def extract_code(text: str) -> str:
    """The first fenced code block (even an unclosed one, as a cut-off answer leaves), else the
    whole answer: small models do not always fence their code."""
    m = _FENCE.search(text)
    return (m.group(2) if m else text).strip("\n")


def parse_json(text: str) -> Any:
    """The JSON value in an answer: a ```json fence, the whole text, or the outermost {...} /
    [...]. ValueError says why when there is none."""
    candidates = [m.group(2) for m in _FENCE.finditer(text)] + [text]
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = text.find(open_), text.rfind(close)
        if 0 <= i < j:
            candidates.append(text[i:j + 1])
    err: ValueError | None = None
    for c in candidates:
        try:
            return json.loads(c.strip())
        except ValueError as e:
            err = err or e
    raise ValueError(f"the answer is not valid JSON ({err})")


def answer_footer(reply: Any, stopped: bool = False) -> str:
    """The line under an answer: model · stopped / cut · tokens and speed · notice. ``reply``:
    a finished transport Reply (the magics' and the chat widget's)."""
    bits = [reply.model] if reply.model else []
    if stopped or reply.finish_reason == "cancelled":
        bits.append("stopped")
    elif reply.finish_reason == "length":
        bits.append("cut at --max-tokens")
    u = reply.usage or {}
    if u.get("completion_tokens"):
        rate = f" · {u['tokens_per_second']:.0f} tok/s" if u.get("tokens_per_second") else ""
        bits.append(f"{u['completion_tokens']} tokens{rate}")
    if reply.notice:
        bits.append(reply.notice)
    return " · ".join(bits)
