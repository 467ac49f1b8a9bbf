"""Turning notebook context (cells, outputs, tracebacks, images) into a model prompt.

Shared by the server (sidebar chat), the magics and the CLI so that every front end asks the
model the same way. Context parts are plain dicts, as they travel over the WebSocket:

    {"kind": "cell" | "output" | "error" | "text" | "image" | "notebook",
     "label": "cell [3]", "text": "...", "language": "python",
     "mime": "image/png", "data": "<base64>", "summary": "figure summary text"}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

CONTEXT_KINDS = ("cell", "output", "error", "text", "image", "notebook")

SYSTEM_PROMPT = (
    "You are MiniCPM, a helpful assistant inside a Jupyter notebook. Answer concisely. "
    "Put code in fenced Markdown blocks with the language named."
)

EXPLAIN_CELL = "Explain what this code does, step by step, and point out anything surprising."
FIX_ERROR = (
    "This cell raised the error below. Say briefly what went wrong, then give the corrected "
    "code in one fenced code block."
)
EXPLAIN_IMAGE = "Explain this figure: what it shows, the main pattern, and anything unusual."

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Tracebacks from IPython carry colour codes that only waste tokens."""
    return _ANSI.sub("", text)


def validate_parts(parts: Any) -> list[dict[str, Any]]:
    """Check the shape of context parts from a client; ValueError says what is wrong."""
    if parts is None:
        return []
    if not isinstance(parts, Sequence) or isinstance(parts, (str, bytes)):
        raise ValueError("context must be a list of parts")
    out = []
    for i, p in enumerate(parts):
        if not isinstance(p, Mapping):
            raise ValueError(f"context[{i}] must be an object")
        kind = p.get("kind")
        if kind not in CONTEXT_KINDS:
            raise ValueError(f"context[{i}].kind must be one of {', '.join(CONTEXT_KINDS)}")
        if kind == "image":
            if not isinstance(p.get("data"), str) or not p.get("data"):
                raise ValueError(f"context[{i}] is an image without base64 'data'")
        elif not isinstance(p.get("text", ""), str):
            raise ValueError(f"context[{i}].text must be a string")
        out.append(dict(p))
    return out


def format_part(part: Mapping[str, Any]) -> str:
    kind = part["kind"]
    label = part.get("label") or kind
    text = strip_ansi(str(part.get("text", "")))
    if kind in ("cell", "notebook"):
        lang = part.get("language", "python")
        return f"{label}:\n```{lang}\n{text.rstrip()}\n```"
    if kind == "error":
        return f"{label} (error):\n```\n{text.rstrip()}\n```"
    if kind == "output":
        return f"{label} (output):\n```\n{text.rstrip()}\n```"
    if kind == "image":
        summary = part.get("summary")
        return f"{label} (image){': ' + summary if summary else ' attached'}"
    return f"{label}:\n{text}"


def build_user_message(
    question: str,
    parts: Sequence[Mapping[str, Any]] = (),
    count_tokens: Callable[[str], int] | None = None,
    budget_tokens: int | None = None,
) -> tuple[str, bool]:
    """The user turn: context blocks first, then the question. With a token budget, context is
    cut from the end of the longest parts and the message says so. Returns (text, truncated)."""
    blocks = [format_part(p) for p in parts]
    truncated = False
    if count_tokens and budget_tokens is not None:
        while blocks and count_tokens("\n\n".join(blocks)) > budget_tokens:
            i = max(range(len(blocks)), key=lambda k: len(blocks[k]))
            if len(blocks[i]) < 200:
                blocks.pop(i)
            else:
                blocks[i] = blocks[i][: len(blocks[i]) * 3 // 4] + "\n…[truncated]"
            truncated = True
        if truncated:
            blocks.append("(Some context was truncated to fit the model's context window.)")
    body = "\n\n".join(blocks)
    question = question.strip()
    return (f"{body}\n\n{question}" if body else question), truncated
