"""The inline completion runner behind ``/minicpm/complete``: a ``complete`` frame checked
(``parse_inline``), then run on the shared engine by one thread, newest first, giving the engine
up to any chat, magic or OpenAI request (see completion_api.py's module doc for the rules)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import minicpm
from minicpm import completion
from minicpm.completion import Cell, CompletionRequest, Suggestion, TokenCounter

from .engine_host import EngineHost
from .errors import RequestError, message_for, status_for
from .handlers import ServerState
from .validation import check_max_tokens, check_whole

# Limits checked before any work (the frame size itself is capped by max_body_bytes).
MAX_INLINE_TOKENS = 256
MAX_CELLS = 1000
MAX_TEXT_CHARS = 1_000_000  # prefix + suffix + every cell


def parse_inline(frame: dict[str, Any], cfg: Any) -> tuple[CompletionRequest, int, int]:
    """A ``complete`` frame → (request, max_tokens, prompt budget); 400/413 on bad input."""
    prefix, suffix = frame.get("prefix"), frame.get("suffix", "")
    if not isinstance(prefix, str) or not isinstance(suffix, str):
        raise RequestError(400, "prefix and suffix must be strings")
    raw_cells = frame.get("cells", [])
    if not isinstance(raw_cells, list):
        raise RequestError(400, "cells must be a list of {kind, source}")
    if len(raw_cells) > MAX_CELLS:
        raise RequestError(413, f"at most {MAX_CELLS} cells")
    cells = []
    total = len(prefix) + len(suffix)
    for i, c in enumerate(raw_cells):
        if not isinstance(c, dict) or not isinstance(c.get("source"), str) \
                or c.get("kind", "code") not in ("code", "markdown", "raw"):
            raise RequestError(400, f"cells[{i}] must be {{kind: code|markdown|raw, source}}")
        total += len(c["source"])
        cells.append(Cell(c.get("kind", "code"), c["source"]))
    if total > MAX_TEXT_CHARS:
        raise RequestError(413, f"the cells hold more than {MAX_TEXT_CHARS} characters; send "
                                "the nearest ones only")
    mode = frame.get("mode", "line")
    language = frame.get("language", "python")
    if not isinstance(language, str) or len(language) > 64:
        raise RequestError(400, "language must be a short string")
    try:
        req = CompletionRequest(prefix, suffix, cells, mode=mode, language=language.lower())
    except ValueError as e:
        raise RequestError(400, str(e)) from e
    max_tokens = check_max_tokens(frame.get("max_tokens"), cfg, 48, MAX_INLINE_TOKENS)
    budget = check_whole(frame.get("budget", completion.DEFAULT_BUDGET), "budget", 16, 32768)
    return req, max_tokens or 48, budget


class YieldingEvent(threading.Event):
    """A cancel flag that also reads as set while another request (a chat, a magic, an
    OpenAI call) waits for the engine: the engine checks it between prefill chunks and before
    every token, so an inline request gives the engine up at once, even mid-prefill."""

    def __init__(self, others_waiting: Any = None):
        super().__init__()
        self._others = others_waiting
        self.preempted = False

    def is_set(self) -> bool:
        if super().is_set():
            return True
        if self._others is not None and self._others():
            self.preempted = True
            return True
        return False

    def cancelled(self) -> bool:
        """Set by a stop or a newer request (not by preemption)."""
        return super().is_set()


@dataclass(eq=False)
class InlineJob:
    id: str
    req: CompletionRequest
    max_tokens: int
    budget: int
    cancel_event: YieldingEvent = field(default_factory=YieldingEvent)
    received: float = field(default_factory=time.monotonic)
    cancelled_at: float | None = None
    superseded: bool = False

    def cancel(self) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = time.monotonic()
        self.cancel_event.set()


class InlineCompleter:
    """Runs inline completions one at a time on the shared engine (see the module doc)."""

    def __init__(self, host: EngineHost):
        self.host = host
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minicpm-inline")
        self._counters: dict[int, TokenCounter] = {}
        self.stats = {"requests": 0, "cancelled": 0, "busy": 0, "preempted": 0}

    def _others_waiting(self) -> bool:
        return self.host.busy

    def new_job(self, rid: str, req: CompletionRequest, max_tokens: int,
                budget: int) -> InlineJob:
        return InlineJob(rid, req, max_tokens, budget,
                         cancel_event=YieldingEvent(self._others_waiting))

    def submit(self, job: InlineJob, send: Any) -> None:
        """Run ``job``; ``send(frame)`` is called on the event loop for each frame."""
        loop = self.host.loop
        self.stats["requests"] += 1

        def post(frame: dict[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(send, frame)
            except RuntimeError:  # the loop is gone: the server stopped
                job.cancel()

        self._pool.submit(self._run, job, post)

    def _counter(self, engine: minicpm.Engine) -> TokenCounter:
        key = id(engine)
        if key not in self._counters:
            self._counters = {key: TokenCounter(engine.count_tokens)}  # one engine at a time
        return self._counters[key]

    def _run(self, job: InlineJob, post: Any) -> None:
        started = time.monotonic()
        timing: dict[str, float | None] = {"queue_ms": _ms(started - job.received)}
        engine = self.host.engine
        if job.cancel_event.cancelled():
            self.stats["cancelled"] += 1
            timing["free_ms"] = _ms(started - (job.cancelled_at or started))
            post(_done(job, "", "cancelled", None, "cancelled", timing))
            return
        if engine is None or self.host.state != "ready":
            post({"type": "error", "id": job.id, "status": 503,
                  "error": f"no model is ready (state: {self.host.state})"})
            return
        if self._others_waiting():
            self.stats["busy"] += 1
            post(_done(job, "", "busy", None, "cancelled", timing))
            return
        gen = None
        try:
            prompt, sugg, gen = completion.complete(
                engine, job.req, budget=job.budget, max_tokens=job.max_tokens,
                cancel=job.cancel_event, counter=self._counter(engine))
            before = _reused_total(engine)
            shown = ""
            t_gen = time.monotonic()
            for delta in gen:
                done = sugg.feed(delta)
                if sugg.visible != shown:
                    shown = sugg.visible
                    if timing.get("first_ms") is None:
                        timing["first_ms"] = _ms(time.monotonic() - job.received)
                    post({"type": "partial", "id": job.id, "text": shown})
                if done:
                    break
            stopped = job.cancel_event.cancelled()  # read first: close() sets it too
            preempted = job.cancel_event.preempted and not stopped
            gen.close()  # frees the engine (also when the suggestion ended early)
            end = time.monotonic()
            usage = gen.usage
            reused = _reused_total(engine)
            usage_d: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens,
                       "completion_tokens": usage.completion_tokens,
                       "reused_tokens": None if reused is None or before is None
                       else reused - before,
                       "time_to_first_token": usage.time_to_first_token}
            info = {"tokens": prompt.tokens, "cells_used": prompt.cells_used,
                    "cells_total": prompt.cells_total, "fim": prompt.fim,
                    "cut_tokens": prompt.cut_tokens}
            timing["total_ms"] = _ms(end - job.received)
            if usage.time_to_first_token is not None:  # the engine's first token, shown or not
                timing["first_token_ms"] = _ms(t_gen - job.received + usage.time_to_first_token)
            if stopped or preempted:
                key = "cancelled" if stopped else "preempted"
                self.stats[key] += 1
                timing["free_ms"] = _ms(end - (job.cancelled_at or end))
                post(_done(job, "", key, usage_d, "cancelled", timing, info, sugg))
                return
            text = sugg.final()
            finish = "stop" if sugg.done or usage.finish_reason == "stop" else "length"
            post(_done(job, text, sugg.dropped, usage_d, finish, timing, info, sugg))
        except Exception as e:  # every failure becomes an error frame
            post({"type": "error", "id": job.id, "status": status_for(e),
                  "error": message_for(e)})
        finally:
            if gen is not None:
                gen.close()  # never raises

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _reused_total(engine: minicpm.Engine) -> int | None:
    """Prompt tokens the engine's prompt cache has served so far (None: no such counter)."""
    stats = getattr(engine, "stats", None)
    if not callable(stats):
        return None
    try:
        return int(stats().get("prompt_cache", {})["tokens_reused"])
    except (KeyError, TypeError, ValueError):
        return None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _done(job: InlineJob, text: str, dropped: str | None, usage: dict[str, Any] | None,
          finish: str, timing: dict[str, Any], prompt: dict[str, Any] | None = None,
          sugg: Suggestion | None = None) -> dict[str, Any]:
    return {"type": "done", "id": job.id, "text": text, "dropped": dropped,
            "stop_reason": sugg.stop_reason if sugg else None, "finish_reason": finish,
            "usage": usage, "prompt": prompt, "timing": timing}


def inline_completer(settings: dict[str, Any]) -> InlineCompleter:
    state: ServerState = settings["minicpm"]
    comp = settings.get("minicpm_inline")
    if comp is None or comp.host is not state.host:
        comp = settings["minicpm_inline"] = InlineCompleter(state.host)
    return comp
