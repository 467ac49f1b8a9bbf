"""Turning notebook context (cells, outputs, tracebacks, images) into a model prompt.

Shared by the server (sidebar chat), the magics and the CLI so that every front end asks the
model the same way: :func:`assemble` is the one place that adds the system prompt, turns
images into text for models that cannot see, and fits the context into the token budget left
by :func:`output_reserve`. Context parts are plain dicts, as they travel over the WebSocket:

    {"kind": "cell" | "output" | "error" | "text" | "image" | "notebook",
     "label": "cell [3]", "text": "...", "language": "python",
     "mime": "image/png", "data": "<base64>", "summary": "figure summary text"}
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import MiniCPMError, context_room

if TYPE_CHECKING:  # the engine imports this module: no import at run time
    from .api import Engine

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


MIN_BLOCK_CHARS = 200  # a part cut shorter than this is dropped instead (it would say nothing)
# No token is longer than this many characters in the tokenizers we load: text beyond
# budget × this cannot fit, so it is cut before the first (and only large) tokenization.
MAX_CHARS_PER_TOKEN = 32
MAX_ROUNDS = 6  # tokenizations after the first; each shrinks the estimate
TRUNCATED_NOTE = "(Some context was truncated to fit the model's context window.)"
NO_VISION_NOTE = "not shown: this model cannot see images, answer from the text around it"


class AssemblyCancelled(MiniCPMError):
    """The request was cancelled while its prompt was being fitted."""


def output_reserve(context_length: int, max_tokens: int) -> int:
    """Tokens kept free for the answer: all of ``max_tokens`` up to an eighth of the context
    (at least 16). The one formula for every engine path and the context budget."""
    return min(int(max_tokens), max(16, context_length // 8))


def _cut(block: str, chars: int) -> str:
    return block[:chars] + "\n…[truncated]"


def _fit_blocks(blocks: list[str], target_chars: int) -> list[str]:
    """Cut the longest blocks first so that the total is about ``target_chars``: every block
    longer than a common cap L is cut to L (water filling, O(n log n)); when L would be too
    short to say anything, the longest blocks are dropped instead, shortest kept."""
    n = len(blocks)
    if n == 0 or sum(map(len, blocks)) <= target_chars:
        return list(blocks)
    lengths = sorted(len(b) for b in blocks)
    # Largest L with sum(min(len, L)) <= target: walk the sorted lengths once.
    used, cap = 0, 0
    for i, ln in enumerate(lengths):
        rest = n - i
        if used + ln * rest > target_chars:
            cap = (target_chars - used) // rest
            break
        used += ln
    else:  # pragma: no cover - excluded by the early return
        return list(blocks)
    if cap >= MIN_BLOCK_CHARS:
        return [b if len(b) <= cap else _cut(b, cap) for b in blocks]
    # Too little room to cut fairly: keep the shortest blocks that fit, in their order.
    keep: set[int] = set()
    total = 0
    for i in sorted(range(n), key=lambda k: len(blocks[k])):
        if total + len(blocks[i]) > target_chars:
            break
        keep.add(i)
        total += len(blocks[i])
    return [b for i, b in enumerate(blocks) if i in keep]


def build_user_message(
    question: str,
    parts: Sequence[Mapping[str, Any]] = (),
    count_tokens: Callable[[str], int] | None = None,
    budget_tokens: int | None = None,
    cancel: threading.Event | None = None,
) -> tuple[str, bool]:
    """The user turn: context blocks first, then the question. With a token budget, context is
    cut from the end of the longest parts and the message says so. Returns (text, truncated).

    Linear in the size of the context, with one tokenization per budget decision (at most
    ``MAX_ROUNDS + 1`` in all): the characters-per-token ratio of the last count sets the next
    cut. ``cancel`` is checked between tokenizations (AssemblyCancelled)."""
    blocks = [format_part(p) for p in parts]
    truncated = False
    if count_tokens is not None and budget_tokens is not None and blocks:
        budget = max(0, budget_tokens)
        sep = "\n\n"
        original = blocks
        ceiling = budget * MAX_CHARS_PER_TOKEN
        if sum(map(len, blocks)) + len(sep) * len(blocks) > ceiling:
            blocks, truncated = _fit_blocks(original, ceiling), True
        n = count_tokens(sep.join(blocks)) if blocks else 0
        rounds = 0
        while n > budget:
            if cancel is not None and cancel.is_set():
                raise AssemblyCancelled("cancelled while fitting the context")
            truncated = True
            chars = len(sep.join(blocks))
            # Aim a little under the ratio's estimate, more so each round.
            target = int(chars * budget / n * (0.95 - 0.1 * rounds)) if n else 0
            blocks = _fit_blocks(original, max(0, target)) if rounds < MAX_ROUNDS else []
            n = count_tokens(sep.join(blocks)) if blocks else 0
            rounds += 1
        if truncated:
            blocks.append(TRUNCATED_NOTE)
    body = "\n\n".join(blocks)
    question = question.strip()
    return (f"{body}\n\n{question}" if body else question), truncated


@dataclass
class Assembled:
    """What ``Engine.chat`` takes, plus what to tell the user."""

    messages: list[dict[str, str]]
    images: list[Any]
    notice: str | None = None  # e.g. "this model cannot see images"
    truncated: bool = False  # context was cut to fit


def _describe(image: Any) -> str:
    describe = getattr(image, "describe", None)
    if callable(describe):  # the server's DecodedImage knows the size as uploaded
        return str(describe())
    fmt = getattr(image, "format", None)
    w, h = getattr(image, "size", (0, 0))
    return f"{fmt + ' ' if fmt else ''}image, {w}×{h} pixels"


CONTEXT_TURNS = ("last", "first")


def assemble(
    engine: Engine,
    messages: Sequence[Mapping[str, str]],
    parts: Sequence[Mapping[str, Any]] = (),
    images: Mapping[int, Any] | None = None,
    *,
    max_tokens: int | None = None,
    cancel: threading.Event | None = None,
    context_turn: str = "last",
) -> Assembled:
    """Messages and images for ``engine.chat``: the system prompt unless one is given, the
    context parts attached to a user turn and fitted to the context window.

    ``context_turn``: "last" puts the context beside the question (one-shot asks: a magic, a
    cell's Explain); "first" keeps it on the conversation's first user turn, so that in a chat
    about one notebook every follow-up's prompt starts with the previous prompt and its answer
    token for token, and the prompt cache reads only the new turn (with "last" the notebook
    moved behind each answer and was prefilled again, a minute on MiniCPM-2B shapes).

    ``images`` maps a part's index to its decoded picture (a PIL image, or an object with
    ``.image`` and ``.describe()``; the caller decodes, off any event loop). A model that cannot see gets the picture's size and any text ``summary`` instead,
    and ``notice`` says so. Backends that cannot tokenize locally (``can_tokenize`` False,
    e.g. remote) get the context untrimmed: their server enforces its own window."""
    info = engine.info
    images = images or {}
    msgs = [dict(m) for m in messages]
    if context_turn not in CONTEXT_TURNS:
        raise ValueError(f"context_turn must be one of {', '.join(CONTEXT_TURNS)}")
    users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
    if not users:
        raise ValueError("messages need at least one user message")
    user_idx = users[0] if context_turn == "first" else users[-1]
    if msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
        user_idx += 1
    pictures: list[Any] = []
    notice = None
    shown = []
    for i, p in enumerate(parts):
        p = {k: v for k, v in p.items() if k != "data"}
        if i in images:
            desc = _describe(images[i])
            if info.vision:
                pictures.append(getattr(images[i], "image", images[i]))
                p["summary"] = p.get("summary") or f"{desc}, attached"
            else:
                # Degrade, don't fail: the model gets the size (and any summary the client
                # computed), and is told it cannot see the picture.
                extra = f"; summary: {p['summary']}" if p.get("summary") else ""
                p["summary"] = f"{desc} ({NO_VISION_NOTE}){extra}"
                notice = (f"{info.label} cannot see images: it was given only the image's "
                          "size and any text summary. Load a MiniCPM-V model to ask about "
                          "pictures.")
        elif p.get("kind") == "image":
            p["summary"] = p.get("summary") or "image not available"
        shown.append(p)
    count = budget = None
    if engine.can_tokenize:
        ctx = info.context_length
        reserve = output_reserve(ctx, max_tokens or engine.defaults.max_tokens)
        # The conversation without the context, rendered exactly as the model will see it:
        # one tokenization gives everything the context must share the window with.
        base = engine.count_tokens(engine.render(msgs), add_bos=True)
        budget = context_room(base + 8, ctx, reserve)  # 8: the lines joining context, question
        count = engine.count_tokens
    text, truncated = build_user_message(msgs[user_idx]["content"], shown, count, budget, cancel)
    msgs[user_idx]["content"] = text
    return Assembled(msgs, pictures, notice, truncated)
