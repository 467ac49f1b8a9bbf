"""What every backend provides, and the shared token → text pipeline built on it.

A backend either streams token ids for a prompt (llama.cpp, torch) and lets this module do
templates, UTF-8 decoding, stop strings and context checks, or overrides ``stream_chat`` /
``stream_complete`` when it works on whole messages (remote servers, vision models).
"""

from __future__ import annotations

import codecs
import threading
import time
from abc import ABC
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import templates
from ..errors import ImageError, check_context
from ..sampling import SamplingParams, StopMatcher


@dataclass
class EngineInfo:
    """What is loaded; shown wherever the model is named (CLI, server status, magics, sidebar)."""

    model: str
    architecture: str
    quantization: str
    context_length: int
    backend: str
    device: str = "cpu"
    stand_in: bool = False
    vision: bool = False
    path: str | None = None
    parameters: int | None = None
    hint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model} (stand-in)" if self.stand_in else self.model

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"] = self.label
        return d


@dataclass
class Usage:
    """Filled in while a generation runs; final once the iterator is exhausted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token: float | None = None
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    truncated_tokens: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Decode rate, first token excluded (it is paid by prefill)."""
        n = self.completion_tokens - 1
        return n / self.decode_seconds if n > 0 and self.decode_seconds > 0 else 0.0

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens_per_second"] = round(self.tokens_per_second, 2)
        d["prefill_tokens_per_second"] = round(self.prefill_tokens_per_second, 2)
        return d


class Backend(ABC):
    """One loaded model. Not thread-safe: ``Engine`` serialises generations."""

    name: str = "?"
    info: EngineInfo
    chat_template: str = templates.MINICPM
    bos_text: str = ""
    eos_text: str = ""
    adds_bos: bool = True  # does tokenize(add_bos=True) prepend a BOS token?
    # Can ``tokenize`` count tokens here? (Remote servers cannot: their context budget is
    # theirs.) Set for every subclass from whether it implements ``tokenize``; a class may
    # also say so itself.
    can_tokenize: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "can_tokenize" not in cls.__dict__:
            cls.can_tokenize = cls.tokenize is not Backend.tokenize

    # --- token-level interface (llama.cpp, torch) -------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        raise NotImplementedError(f"{self.name} backend does not tokenize locally")

    # Can this backend constrain its output with a grammar (response_format, tools)?
    supports_grammar: bool = False
    # Does generate_tokens yield logprob entries (OpenAI's logprobs / top_logprobs)?
    supports_logprobs: bool = False

    def generate_tokens(
        self, prompt_tokens: list[int], params: SamplingParams, cancel: threading.Event
    ) -> Iterator[tuple[Any, ...]]:
        """Yield (token id, its bytes[, its logprob entry]) until an end-of-generation token (not yielded), the
        caller stops iterating, or ``cancel`` is set (checked before every token)."""
        raise NotImplementedError

    # --- message-level overrides (remote, vision) ----------------------------------------------
    def stream_chat(
        self,
        messages: list[dict[str, str]],
        images: Sequence[Any],
        params: SamplingParams,
        cancel: threading.Event,
        usage: Usage,
    ) -> Iterator[str] | None:
        """Return a text-delta iterator to take over chat, or None to use the token pipeline."""
        if images:
            raise ImageError(
                f"{self.info.label} cannot see images; use a MiniCPM-V model, or describe the "
                "figure as text (minicpm.figures.summarize_figure)"
            )
        return None

    def stream_complete(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, usage: Usage
    ) -> Iterator[str] | None:
        return None

    def fim_tokens(self) -> Any:
        """The model's fill-in-the-middle tokens (``minicpm.completion.FimTokens``); None
        when it has none or the backend cannot say (torch, remote)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model's memory."""


def stream_text(
    backend: Backend,
    prompt_tokens: list[int],
    params: SamplingParams,
    cancel: threading.Event,
    usage: Usage,
    extra_stops: Sequence[str] = (),
    lstrip: bool = False,
    logprobs_out: list[dict[str, Any]] | None = None,
) -> Iterator[str]:
    """Token ids → text deltas: incremental UTF-8 (a character split over tokens is held until
    whole), stop strings (never emitted), max_tokens, cancel, timings. ``lstrip`` drops the
    reply's leading white space (SentencePiece models start a turn with a spaced token).
    A backend may yield (id, bytes, logprob entry): entries go to ``logprobs_out`` before the
    text that holds their token is yielded."""
    ctx = backend.info.context_length
    check_context(len(prompt_tokens), ctx)
    usage.prompt_tokens = len(prompt_tokens)
    budget = min(params.max_tokens, ctx - len(prompt_tokens))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stopper = StopMatcher(tuple(params.stop) + tuple(extra_stops))
    start = time.perf_counter()
    first_at: float | None = None
    usage.finish_reason = "stop"
    tokens = backend.generate_tokens(prompt_tokens, params, cancel)
    try:
        for item in tokens:
            piece = item[1]
            if logprobs_out is not None and len(item) > 2 and item[2] is not None:
                logprobs_out.append(item[2])
            now = time.perf_counter()
            if first_at is None:
                first_at = now
                usage.time_to_first_token = usage.prefill_seconds = now - start
            usage.completion_tokens += 1
            usage.decode_seconds = now - first_at
            text = stopper.feed(decoder.decode(piece))
            if lstrip and text:
                text = text.lstrip()
                lstrip = not text
            if text:
                yield text
            if stopper.stopped:
                break
            if cancel.is_set():
                usage.finish_reason = "cancelled"
                break
            if usage.completion_tokens >= budget:
                usage.finish_reason = "length"
                break
        else:
            if cancel.is_set():
                usage.finish_reason = "cancelled"
    finally:
        close = getattr(tokens, "close", None)
        if close:
            close()
    tail = stopper.feed(decoder.decode(b"", final=True)) + stopper.flush()
    if tail:
        yield tail
