"""Inline code completion: notebook → prompt, streamed text → a suggestion that fits the cell.

MiniCPM-2B/1B and the stand-in have no fill-in-the-middle (FIM) tokens, so the prompt is a raw
continuation of a script: the notebook's earlier cells (Markdown as ``#`` comments, outputs
left out), then the current cell up to the cursor. Models whose GGUF vocabulary has FIM tokens
get ``<pre>script<suf>rest of cell<mid>`` instead.

The prompt is laid out so that typing changes only its end (earlier cells first, chosen with
a budget that moves in steps), which lets the engine's prompt cache reuse everything before
the cursor. ``Suggestion`` turns the model's deltas into what the editor shows: cut at the end
of the line / statement / block, never a code fence, the overlap with the text after the
cursor trimmed, and dropped if the cell would not parse with it.

No Jupyter imports: the server builds requests from the editor's cells and calls this.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .pycode import code_part, indent_of, is_header, parses, scan

MODES = ("line", "statement", "block")
DEFAULT_BUDGET = 1024  # prompt tokens
BUDGET_STEP = 128  # the current cell's share of the budget moves in steps of this many tokens
SUFFIX_SHARE = 4  # FIM: the text after the cursor gets at most budget / SUFFIX_SHARE tokens
CELL_SEP = "\n\n"



@dataclass
class Cell:
    """One notebook cell as the editor has it (outputs are never sent)."""

    kind: str  # "code" | "markdown" | "raw"
    source: str


@dataclass
class CompletionRequest:
    """What the editor knows at the cursor."""

    prefix: str  # the current cell up to the cursor
    suffix: str = ""  # the rest of the current cell
    before: Sequence[Cell] = ()  # earlier cells, in notebook order
    mode: str = "line"  # line | statement | block
    language: str = "python"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        # Completing in the middle of a line: only the rest of that line makes sense.
        if self.suffix.split("\n", 1)[0].strip():
            self.mode = "line"

    @property
    def rest_of_line(self) -> str:
        return self.suffix.split("\n", 1)[0]


@dataclass(frozen=True)
class FimTokens:
    """The texts of a model's fill-in-the-middle tokens (as the tokenizer parses them)."""

    prefix: str
    suffix: str
    middle: str


@dataclass
class Prompt:
    text: str
    fim: bool
    tokens: int  # as counted (BOS not included)
    cells_used: int  # earlier cells included
    cells_total: int
    cut_tokens: int = 0  # tokens of the current cell left out at its start (over budget)


# --- FIM tokens ------------------------------------------------------------------------------


def fim_tokens(engine: Any) -> FimTokens | None:
    """The FIM tokens of the model behind ``engine`` (``Engine.fim_tokens()``: an engine in
    this process or in a worker process alike), or None."""
    own = getattr(engine, "fim_tokens", None)
    return own() if callable(own) else None


# --- prompt ----------------------------------------------------------------------------------


class TokenCounter:
    """Counts tokens of cell texts with an LRU memo: a keystroke re-counts only the current
    cell, not the whole notebook."""

    def __init__(self, count: Callable[[str], int], size: int = 1024):
        self._count = count
        self._memo: OrderedDict[str, int] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            n = self._memo.get(text)
            if n is not None:
                self._memo.move_to_end(text)
                return n
        n = self._count(text)
        with self._lock:
            self._memo[text] = n
            if len(self._memo) > self._size:
                self._memo.popitem(last=False)
        return n


def approx_tokens(text: str) -> int:
    """ceil(len / 3.5): the project's one tokenizer-free ratio, the same as the kernel side's
    variable inspector (kernel_ext: ``inspect_vars.approx_tokens``, whose docstring gives the
    reason) and the sidebar's ``estimateTokens``."""
    return (len(text) * 2 + 6) // 7


def cell_text(cell: Cell) -> str:
    """A cell as it appears in the script: code as is, Markdown as comments, raw cells dropped."""
    src = cell.source.rstrip()
    if cell.kind == "code":
        return src
    if cell.kind == "markdown" and src.strip():
        return "\n".join(("# " + line).rstrip() for line in src.splitlines())
    return ""


def _step_up(n: int) -> int:
    return -(-max(n, 1) // BUDGET_STEP) * BUDGET_STEP


def _tail_lines(text: str, budget: int, count: Callable[[str], int]) -> tuple[str, int]:
    """The longest tail of ``text`` that starts at a line and fits ``budget`` tokens (cut points
    move in whole lines, so the prompt start changes rarely while typing)."""
    lines = text.split("\n")
    for i in range(len(lines)):
        tail = "\n".join(lines[i:])
        if count(tail) <= budget:
            return tail, i
    # One line longer than the budget: keep its end (rare; minified data, long strings).
    keep = max(1, budget) * 3
    return text[-keep:], len(lines) - 1


def build_prompt(req: CompletionRequest, count: Callable[[str], int] | None = None,
                 budget: int = DEFAULT_BUDGET, fim: FimTokens | None = None) -> Prompt:
    """The prompt for ``req`` within ``budget`` tokens: the current cell first, then the
    nearest earlier cells that fit, emitted in notebook order.

    Laid out for the prompt cache: the current cell reserves a quarter of the budget (more,
    in steps of ``BUDGET_STEP`` tokens, once it is longer), so the earlier cells do not change
    while a cell is typed and every keystroke only changes the prompt's end; and the first
    earlier cell moves in steps too (``_first_cell``), so a new cell rarely changes the start."""
    count = count or approx_tokens
    if budget < 16:
        raise ValueError(f"the prompt budget must be at least 16 tokens, got {budget}")
    suffix_text = ""
    if fim is not None and req.suffix.strip():
        suffix_text, _ = _head_lines(req.suffix, budget // SUFFIX_SHARE, count)
    fixed = count(suffix_text) + (8 if fim else 0)
    current = req.prefix
    cur_tokens = count(current)
    cut = 0
    room = budget - fixed
    if cur_tokens > room:
        current, _ = _tail_lines(current, room - BUDGET_STEP // 2, count)
        cut = cur_tokens - count(current)
        cur_tokens = count(current)
    # The current cell's reservation: a quarter of the budget, or more in steps as it grows;
    # the earlier cells get the rest.
    left = budget - fixed - min(room, max(budget // 4, _step_up(cur_tokens)))
    texts = [t for t in (cell_text(c) for c in req.before) if t]
    chosen = texts[_first_cell(texts, left, count):] if cut == 0 and left > 0 else []
    script = "".join(t + CELL_SEP for t in chosen) + current
    if fim is not None:
        text = f"{fim.prefix}{script}{fim.suffix}{suffix_text}{fim.middle}"
    else:
        text = script
    return Prompt(text=text, fim=fim is not None, tokens=count(text), cells_used=len(chosen),
                  cells_total=len(texts), cut_tokens=cut)


def _first_cell(texts: list[str], room: int, count: Callable[[str], int]) -> int:
    """Index of the first earlier cell to include so that the rest fit ``room`` tokens.

    A sliding window (the nearest cells that fit) would change the prompt's start with every
    new cell, and so cost a full prefill each time. Instead the tokens left out at the start
    grow in steps of half the room: the start stays put for several cells, and at least
    half the room is used."""
    sizes = [count(t + CELL_SEP) for t in texts]
    excess = sum(sizes) - room
    if excess <= 0:
        return 0
    step = max(1, room // 2)
    drop = -(-excess // step) * step
    dropped = 0
    for i, n in enumerate(sizes):
        if dropped >= drop:
            return i
        dropped += n
    return len(texts)


def _head_lines(text: str, budget: int, count: Callable[[str], int]) -> tuple[str, int]:
    lines = text.split("\n")
    for i in range(len(lines), 0, -1):
        head = "\n".join(lines[:i])
        if count(head) <= budget:
            return head, i
    return "", 0


# --- the suggestion --------------------------------------------------------------------------


class Suggestion:
    """Turns streamed model text into the suggestion to show.

    ``feed(delta)`` returns True once the suggestion is complete (the caller stops the model);
    ``visible`` is what may be shown meanwhile (never a trailing blank, nor a tail that may
    turn out to overlap the text after the cursor); ``final()`` is the text to insert, or ""
    when it was dropped (``dropped`` then says why)."""

    def __init__(self, req: CompletionRequest):
        self.req = req
        self.raw = ""
        self.text = ""  # raw, cut at the stop point
        self.done = False
        self.dropped: str | None = None
        self.stop_reason: str | None = None  # line | statement | block | fence | None
        self._line = req.prefix.rsplit("\n", 1)[-1]  # the cursor line's text before the cursor
        # On a fresh line the editor has indented already: a model that starts its answer with
        # a space (SentencePiece-style tokens do) would push the line one column deeper.
        self._fresh = "\n" in req.prefix and not self._line.strip()

    def feed(self, delta: str) -> bool:
        if self.done:
            return True
        self.raw += delta
        self.text, reason = self._cut(self.raw.lstrip(" \t") if self._fresh else self.raw)
        if reason:
            self.done, self.stop_reason = True, reason
        return self.done

    def _cut(self, gen: str) -> tuple[str, str | None]:
        fence = gen.find("```")
        if fence >= 0:
            return gen[:fence], "fence"
        mode = self.req.mode
        lines = gen.split("\n")
        content = False  # any non-blank generated text yet?
        header_indent: int | None = None
        base: int | None = None
        pos = 0
        for i, part in enumerate(lines[:-1]):  # every line that has ended with "\n"
            line = (self._line if i == 0 else "") + part
            end = pos + len(part)  # index of this "\n" in gen
            content = content or bool(part.strip())
            if line.strip():
                ind = indent_of(line)
                if i > 0 and mode == "block" and (
                        (header_indent is not None and ind <= header_indent)
                        or (header_indent is None and base is not None and ind < base)):
                    return gen[:pos].rstrip(), "block"  # dedented: the block has ended
                if base is None:
                    base = ind
                if content and mode == "line":
                    return gen[:end], "line"
                st = scan(self.req.prefix + gen[:end])
                complete = not st.brackets and not st.quote and \
                    not code_part(line).rstrip().endswith("\\")
                if complete and header_indent is None and is_header(line):
                    header_indent = ind
                    if mode == "statement":
                        mode = "block"  # a compound statement: its body is part of it
                elif content and complete and mode == "statement":
                    return gen[:end], "statement"
            elif content and mode == "block" and header_indent is None:
                st = scan(self.req.prefix + gen[:end])
                if not st.brackets and not st.quote:
                    return gen[:end].rstrip(), "block"  # a blank line ends a top-level block
            pos = end + 1
        return gen, None

    @property
    def visible(self) -> str:
        text = self.text.rstrip()
        if not self.done:
            text = _hold_overlap(text, self.req.rest_of_line.strip())
        return text

    def final(self) -> str:
        """The suggestion to insert ("" if dropped; ``dropped`` says why)."""
        text = trim_overlap(self.text.rstrip(), self.req.suffix)
        if not text.strip():
            self.dropped = "empty"
            return ""
        if self.req.language == "python" and not suggestion_parses(self.req, text):
            self.dropped = "syntax"
            return ""
        return text


def _hold_overlap(text: str, rest: str) -> str:
    """Hide a tail of ``text`` that could be the start of ``rest`` (it may be trimmed)."""
    for k in range(min(len(rest), len(text)), 0, -1):
        if text.endswith(rest[:k]):
            return text[:-k]
    return text


def trim_overlap(text: str, suffix: str) -> str:
    """Cut what the model wrote that the cell already has after the cursor: the rest of the
    cursor's line (``print(x|)`` + ``y)`` → ``y``), or whole lines that follow."""
    rest = suffix.split("\n", 1)[0].strip()
    if rest:
        for k in range(len(rest), 0, -1):  # the longest head of the rest that ends the text
            if text.rstrip().endswith(rest[:k]):
                return text.rstrip()[:-k]
        return text
    after = [ln.strip() for ln in suffix.split("\n") if ln.strip()]
    lines = text.split("\n")
    for k in range(min(len(lines) - 1, len(after)), 0, -1):
        if [ln.strip() for ln in lines[-k:]] == after[:k]:
            return "\n".join(lines[:-k]).rstrip()
    return text


def suggestion_parses(req: CompletionRequest, text: str) -> bool:
    """Keep a suggestion if the cell parses with it; when the cell does not parse without it
    either (an error elsewhere), judge the code up to the end of the suggestion only."""
    if parses(req.prefix + text + req.suffix):
        return True
    if not parses(req.prefix + req.suffix):
        return parses(req.prefix + text)
    return False


# --- one completion --------------------------------------------------------------------------


def stream_suggestion(gen: Iterator[str], suggestion: Suggestion) -> Iterator[str]:
    """Feed a generation's deltas into ``suggestion`` and yield its visible text each time it
    changes; stops pulling from ``gen`` (and so the model) as soon as it is complete."""
    shown = ""
    for delta in gen:
        done = suggestion.feed(delta)
        if suggestion.visible != shown:
            shown = suggestion.visible
            yield shown
        if done:
            break


def prompt_text(engine: Any, req: CompletionRequest, budget: int = DEFAULT_BUDGET) -> str:
    """The prompt a request at this cursor would send (``complete``'s, token for token): what
    the pre-read of a cell being edited reads into the prompt cache."""
    count = TokenCounter(lambda t: engine.count_tokens(t))
    return build_prompt(req, count, budget, fim_tokens(engine)).text


def complete(engine: Any, req: CompletionRequest, *, budget: int = DEFAULT_BUDGET,
             max_tokens: int = 48, cancel: threading.Event | None = None,
             counter: TokenCounter | None = None, **sampling: Any
             ) -> tuple[Prompt, Suggestion, Any]:
    """Prompt + generation for ``req`` on a ``minicpm.Engine``: returns (prompt, suggestion,
    generation); iterate ``stream_suggestion(generation, suggestion)`` to run it."""
    fim = fim_tokens(engine)
    count = counter or TokenCounter(lambda t: engine.count_tokens(t))
    prompt = build_prompt(req, count, budget, fim)
    sampling.setdefault("temperature", 0.0)
    stops = [s for s in (fim.prefix, fim.suffix, fim.middle) if s] if fim else []
    stops += list(sampling.pop("stop", None) or ())
    gen = engine.complete(prompt.text, cancel=cancel, max_tokens=max_tokens,
                          stop=stops or None, truncate="left", **sampling)
    return prompt, Suggestion(req), gen
