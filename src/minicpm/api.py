"""The engine contract: ``load(model) -> Engine``; ``chat`` / ``complete`` stream text deltas."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import templates
from .backends.base import Backend, EngineInfo, Usage, stream_text
from .errors import BackendUnavailableError, check_context, fits_context
from .grammar import SchemaError, response_format_grammar
from .prompts import output_reserve
from .sampling import SamplingParams
from .tools import parse_tool_calls, plan_chat, to_template_messages

log = logging.getLogger("minicpm")

TRUNCATE_MODES = ("error", "left")


class Generation:
    """An iterator of text deltas with a cancel handle.

    Iterate it (in any thread) to run the model; ``cancel()`` may be called from any other
    thread and stops generation before the next token. ``usage`` is complete once iteration
    ends; ``text`` is everything produced so far."""

    def __init__(self, run: Callable[[threading.Event, Usage], Iterator[str]],
                 cancel: threading.Event | None = None,
                 token_logprobs: list[dict[str, Any]] | None = None, tool_mode: str = "none"):
        self.cancel_event = cancel or threading.Event()
        self.usage = Usage()
        # One OpenAI-shaped entry per generated token (when logprobs were asked for),
        # appended before the delta that holds the token is yielded.
        self.token_logprobs: list[dict[str, Any]] = (token_logprobs if token_logprobs
                                                     is not None else [])
        self.tool_mode = tool_mode  # "none" | "auto" | "required" | "named"
        self._parts: list[str] = []
        self._it = run(self.cancel_event, self.usage)

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        delta = next(self._it)
        self._parts.append(delta)
        return delta

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """OpenAI ``tool_calls`` parsed from the text (empty when tools were not offered)."""
        return parse_tool_calls(self.text)[1] if self.tool_mode != "none" else []

    @property
    def content(self) -> str | None:
        """The text without its tool calls (None when the reply is only calls)."""
        return parse_tool_calls(self.text)[0] if self.tool_mode != "none" else self.text

    def read(self) -> str:
        """Run to the end and return the whole text."""
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        """Stop and release the engine. Never raises, so callers need no guard: safe to call
        twice, after the end, after a failure, or from another thread while one iterates
        (then the cancel flag stops it before its next token)."""
        self.cancel_event.set()
        try:
            self._it.close()  # type: ignore[attr-defined]
        except Exception:  # running in another thread, or the run's own cleanup failed
            log.debug("closing a generation", exc_info=True)


class Engine:
    """One loaded model behind a lock: generations run one at a time, in the caller's thread."""

    def __init__(self, backend: Backend, defaults: SamplingParams | None = None):
        self.backend = backend
        self.defaults = defaults or SamplingParams()
        self._lock = threading.Lock()
        self._wanted = 0  # chat/complete calls waiting for the lock: a running prefill yields
        self._wanted_lock = threading.Lock()  # += from several threads is not atomic

    @property
    def info(self) -> EngineInfo:
        return self.backend.info

    # --- prompts ---------------------------------------------------------------------------
    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        """The exact prompt text the model sees for a conversation (BOS not included)."""
        b = self.backend
        plain = to_template_messages(templates.normalize_messages(messages))
        return templates.render(b.chat_template, plain, b.bos_text, b.eos_text, b.adds_bos)

    def count_tokens(self, text: str, add_bos: bool = False) -> int:
        return len(self.backend.tokenize(text, add_bos=add_bos))

    @property
    def can_tokenize(self) -> bool:
        """Can ``count_tokens`` count here? (A remote server's context budget is its own.)"""
        return bool(self.backend.can_tokenize)

    def fim_tokens(self) -> Any:
        """The model's fill-in-the-middle tokens (``minicpm.completion.FimTokens``), or None."""
        return self.backend.fim_tokens()

    def _fit_chat(self, messages: list[dict[str, str]], params: SamplingParams,
                  truncate: str, usage: Usage) -> list[int]:
        """Tokens for the conversation; drops the oldest turns after the system prompt when
        truncate='left' (``usage.truncated_tokens`` = prompt tokens dropped), otherwise
        refuses with ContextOverflowError. How many turns to drop is a binary search: about
        log2(turns) tokenizations, not one per dropped turn."""
        ctx = self.info.context_length
        reserve = output_reserve(ctx, params.max_tokens)

        def tokens_for(msgs: list[dict[str, str]]) -> list[int]:
            return self.backend.tokenize(self.render(msgs), add_bos=True)

        tokens = tokens_for(messages)
        full = len(tokens)
        if fits_context(full, ctx, reserve):
            return tokens
        first = 1 if messages and messages[0]["role"] == "system" else 0
        droppable = len(messages) - first - 1  # the last turn is always kept
        if truncate != "left" or droppable <= 0:
            if truncate == "left" and fits_context(full, ctx):
                return tokens  # one turn left: keep it, max_tokens is clamped to what remains
            check_context(full, ctx, reserve)  # raises: it does not fit with its reserve
        lo, hi = 1, droppable
        best: tuple[int, list[int]] | None = None
        while lo <= hi:  # fewest dropped turns that fit (fewer turns never render longer)
            mid = (lo + hi) // 2
            t = tokens_for(messages[:first] + messages[first + mid:])
            if fits_context(len(t), ctx, reserve):
                best, hi = (mid, t), mid - 1
            else:
                lo = mid + 1
        if best is None:  # even the last turn alone leaves no room for the reserve
            t = tokens_for(messages[:first] + messages[-1:])
            check_context(len(t), ctx)
            best = (droppable, t)
        dropped, tokens = best
        usage.truncated_tokens = full - len(tokens)
        log.warning("dropped the %d oldest message(s) (%d tokens) to fit the %d-token context",
                    dropped, usage.truncated_tokens, ctx)
        return tokens

    # --- generation ------------------------------------------------------------------------
    def chat(self, messages: Sequence[dict[str, Any]], images: Sequence[Any] | None = None, *,
             cancel: threading.Event | None = None, truncate: str = "error",
             **sampling: Any) -> Generation:
        """Stream a reply to a conversation of {'role': system|user|assistant|tool, 'content'}.

        Besides sampling: ``response_format`` (OpenAI's json_object / json_schema), ``tools``
        and ``tool_choice`` (grammar-constrained on llama.cpp; see tools.py), ``logprobs``,
        ``top_logprobs``, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``."""
        msgs, sampling, tool_mode = plan_chat(
            templates.normalize_messages(messages), sampling,
            forwards=getattr(self.backend, "forwards_structured", False))
        params = SamplingParams.from_kwargs(self.defaults, **sampling)
        self._check_structured(params)
        lps: list[dict[str, Any]] = []
        if truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate must be one of {TRUNCATE_MODES}")
        imgs = list(images or ())

        def run(cancel_event: threading.Event, usage: Usage) -> Iterator[str]:
            with self._turn():
                custom = self.backend.stream_chat(msgs, imgs, params, cancel_event, usage)
                if custom is not None:
                    yield from custom
                    return
                tokens = self._fit_chat(msgs, params, truncate, usage)
                stops = templates.stop_strings(self.backend.chat_template)
                yield from stream_text(self.backend, tokens, params, cancel_event, usage, stops,
                                       lstrip=True, logprobs_out=lps)

        return Generation(run, cancel, lps, tool_mode)

    def complete(self, prompt: str, *, cancel: threading.Event | None = None,
                 truncate: str = "error", **sampling: Any) -> Generation:
        """Stream a raw continuation of ``prompt`` (no chat template; BOS added)."""
        if not isinstance(prompt, str):
            raise ValueError("prompt must be a string")
        rf = sampling.pop("response_format", None)
        if rf is not None:
            sampling["grammar"] = response_format_grammar(rf)
        params = SamplingParams.from_kwargs(self.defaults, **sampling)
        self._check_structured(params)
        lps: list[dict[str, Any]] = []

        def run(cancel_event: threading.Event, usage: Usage) -> Iterator[str]:
            with self._turn():
                custom = self.backend.stream_complete(prompt, params, cancel_event, usage)
                if custom is not None:
                    yield from custom
                    return
                tokens = self.backend.tokenize(prompt, add_bos=True)
                ctx = self.info.context_length
                if not fits_context(len(tokens), ctx):
                    if truncate != "left":
                        check_context(len(tokens), ctx)  # raises
                    keep = ctx - min(params.max_tokens, ctx // 2)
                    usage.truncated_tokens = len(tokens) - keep
                    log.warning("dropped the first %d prompt tokens to fit the context",
                                usage.truncated_tokens)
                    tokens = tokens[:1] + tokens[len(tokens) - keep + 1:]
                yield from stream_text(self.backend, tokens, params, cancel_event, usage,
                                       logprobs_out=lps)

        return Generation(run, cancel, lps)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """The engine's lock for a generation; while it waits, a running ``prefill`` gives way
        (llama.cpp: within one graph operation), so a pre-read never holds up a request."""
        with self._wanted_lock:
            self._wanted += 1
        try:
            self._lock.acquire()
        finally:
            with self._wanted_lock:
                self._wanted -= 1
        try:
            yield
        finally:
            self._lock.release()

    def prefill(self, prompt: str | Sequence[dict[str, Any]], *,
                cancel: threading.Event | None = None, chunk_tokens: int = 64,
                continues: bool = True) -> dict[str, Any]:
        """Read a prompt prefix into the backend's KV / prompt cache without sampling, so that
        the next request that starts with it resumes from there. ``prompt``: rendered text
        (BOS added, as ``complete`` does; e.g. a chat rendered up to where the question goes)
        or messages (rendered as ``chat`` would). ``continues``: the real prompt goes on after
        this text, so its last token (which may merge with what follows) is not read.

        Stops once ``cancel`` is set or a chat / complete call waits for the engine: between
        ``chunk_tokens`` chunks, and on llama.cpp inside a chunk too (its abort callback). Returns {"supported", "prompt_tokens", "reused",
        "prefilled", "cancelled", "seconds"}; {"supported": False, "reason"} for backends
        without a prompt cache of their own (torch, remote)."""
        fn = getattr(self.backend, "prefill_tokens", None)
        if fn is None or not self.backend.can_tokenize:
            return {"supported": False,
                    "reason": f"the {self.backend.name} backend keeps no prompt cache"}
        text = prompt if isinstance(prompt, str) else self.render(prompt)
        cancel = cancel or threading.Event()
        with self._lock:
            tokens = self.backend.tokenize(text, add_bos=True)
            if continues and len(tokens) > 1:
                tokens = tokens[:-1]
            out = fn(tokens, cancel, chunk_tokens, lambda: self._wanted > 0)
        return {"supported": True, **out}

    def _check_structured(self, params: SamplingParams) -> None:
        """Options a backend cannot honour are refused, never silently dropped."""
        b = self.backend
        if params.grammar and not b.supports_grammar:
            raise SchemaError(f"the {b.name} backend cannot constrain its output "
                              "(response_format, tools): load a GGUF model (llama.cpp backend)")
        if (params.logprobs or params.top_logprobs) and not b.supports_logprobs:
            raise ValueError(f"the {b.name} backend does not report logprobs")

    def stats(self) -> dict[str, Any]:
        """Prompt-cache hits, tokens reused, speculative acceptance and memory (backends that
        keep such counters; {} otherwise). Safe to call while a generation runs."""
        fn = getattr(self.backend, "stats", None)
        return fn() if callable(fn) else {}

    def close(self) -> None:
        with self._lock:
            self.backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"<minicpm.Engine {i.label} [{i.backend}/{i.device}, {i.quantization}]>"


def load(model: str | Path | None = None, backend: str = "auto", **options: Any) -> Engine:
    """Load a model: a catalogue name, a GGUF file, a Hugging Face-layout folder, or None for
    the best local MiniCPM (the embedded stand-in if there is none).

    Options: n_ctx, n_threads, device ('cpu'|'cuda'), quant ('int8'|'int4'), dtype,
    model_dirs (extra folders to search), base_url / api_key_env (remote), and sampling
    defaults (temperature, top_p, top_k, repetition_penalty, max_tokens, seed, stop)."""
    from .catalogue import resolve

    sampling_names = set(SamplingParams.__dataclass_fields__)
    defaults = SamplingParams.from_kwargs(
        **{k: options.pop(k) for k in list(options) if k in sampling_names})

    if backend == "remote" or options.get("base_url"):
        from .backends.remote import RemoteBackend

        return Engine(RemoteBackend(str(model) if model else None, **options), defaults)

    resolved = resolve(model, model_dirs=options.pop("model_dirs", None))
    chosen = backend
    if chosen == "auto":
        chosen = "llama.cpp" if resolved.format == "gguf" else "torch"
    if chosen == "llama.cpp":
        from .backends.llamacpp import LlamaCppBackend

        b: Backend = LlamaCppBackend(resolved, **options)
    elif chosen == "torch":
        try:
            from .backends.torch_engine import TorchBackend
        except ImportError as e:
            raise BackendUnavailableError(
                f"the torch backend needs PyTorch ({e}); pip install 'jupyter-minicpm[torch]'"
            ) from e
        from .vision.model import is_minicpmv_folder

        if is_minicpmv_folder(resolved.path):  # config.json says minicpmv
            from .vision.backend import TorchVisionBackend

            b = TorchVisionBackend(resolved, **options)
        else:
            b = TorchBackend(resolved, **options)
    else:
        raise ValueError(f"unknown backend {backend!r}; use auto, llama.cpp, torch or remote")
    return Engine(b, defaults)
