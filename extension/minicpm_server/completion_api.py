"""Inline code completion: the editor's WebSocket ``/minicpm/complete`` and OpenAI's legacy
``POST /minicpm/v1/completions``.

Ghost text is a stream of short requests where only the newest matters. So inline requests do
not join the chat queue: one thread runs them on the shared engine, newest first, and

- a new request on a socket cancels that socket's older ones (the engine checks the cancel
  event before every token, so it is free within one token);
- a chat, magic or OpenAI request always goes first: an inline request that finds one queued or
  running is answered at once with nothing (``dropped: "busy"``), and one that is running stops
  at the next token when one arrives (``dropped: "preempted"``).

The engine's lock keeps the two paths from ever generating at the same time.
``/minicpm/v1/completions`` is an ordinary request and goes through the FIFO queue.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jupyter_server.auth.decorator import authorized, ws_authenticated
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

import minicpm
from minicpm import completion
from minicpm.completion import Cell, CompletionRequest, Suggestion, TokenCounter

from .engine_host import EngineHost, Job, raw_prompt
from .errors import RequestError, message_for, status_for
from .events import Delta, Done, Failed
from .handlers import MiniCPMWebSocket, ServerState
from .openai_api import OpenAIHandler, finish_reason, usage_counts

# Limits checked before any work (the frame size itself is capped by max_body_bytes).
MAX_INLINE_TOKENS = 256
MAX_CELLS = 1000
MAX_TEXT_CHARS = 1_000_000  # prefix + suffix + every cell
MAX_PROMPT_CHARS = 1_000_000  # /v1/completions prompt + suffix
MAX_STOP_CHARS = 256


def _parse_json(raw: bytes | str) -> Any:
    try:  # the server's parser (refuses NaN and deep nesting) where it exists
        from .errors import parse_json
    except ImportError:  # pragma: no cover - older errors.py
        try:
            return json.loads(raw)
        except ValueError as e:
            raise RequestError(400, f"malformed JSON: {e}") from e
    return parse_json(raw)


def _limit(cfg: Any, name: str, fallback: int) -> int:
    return int(getattr(cfg, name, fallback))


def check_stop(stop: Any, cfg: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, "stop must be a non-empty string or a list of them")
    if len(stops) > _limit(cfg, "max_stop", 16):
        raise RequestError(400, f"at most {_limit(cfg, 'max_stop', 16)} stop strings")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise RequestError(400, f"a stop string may have at most {MAX_STOP_CHARS} characters")
    return stops


def check_max_tokens(value: Any, cfg: Any, default: int, cap: int | None = None) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(400, "max_tokens must be a positive integer")
    most = min(_limit(cfg, "max_tokens_limit", 32768), cap or 1 << 30)
    if value > most:
        raise RequestError(400, f"max_tokens must be at most {most}")
    return value


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
    budget = frame.get("budget", completion.DEFAULT_BUDGET)
    if not isinstance(budget, int) or isinstance(budget, bool) or not 16 <= budget <= 32768:
        raise RequestError(400, "budget must be an integer in [16, 32768]")
    return req, max_tokens, budget


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
                try:
                    gen.close()
                except Exception:  # closing a finished generator may raise; nothing to do
                    pass

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


class CompletionWebSocket(MiniCPMWebSocket):
    """``/minicpm/complete``: ``complete`` and ``stop`` frames (docs/protocol.md). Authenticated
    and authorized like the chat socket."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.authorize_socket()
        self.jobs: dict[str, InlineJob] = {}
        self.completer = inline_completer(self.settings)
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open()  # WebSocketMixin's ping loop

    def send(self, frame: dict[str, Any]) -> None:
        if frame.get("type") in ("done", "error"):
            self.jobs.pop(str(frame.get("id")), None)
        try:
            self.write_message(json.dumps(frame, ensure_ascii=False))
        except WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.send({"type": "error", "id": None, "status": 400,
                       "error": "binary frames are not accepted; send JSON text"})
            return
        rid: Any = None
        try:
            frame = _parse_json(message)
            if not isinstance(frame, dict):
                raise RequestError(400, "a frame must be a JSON object")
            rid = frame.get("id")
            if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
                raise RequestError(400, "a frame needs an 'id' (string)")
            rid = str(rid)
            kind = frame.get("type")
            if kind == "stop":
                job = self.jobs.get(rid)
                if job is not None:
                    job.cancel()
                return
            if kind != "complete":
                raise RequestError(400, "type must be 'complete' or 'stop'")
            if rid in self.jobs:
                raise RequestError(409, f"request id {rid!r} is already running on this socket")
            req, max_tokens, budget = parse_inline(frame, self.state.config)
            host = self.state.host
            if host.state in ("idle", "error"):
                host.ensure_loading()  # first use, or a restart after a crash: this one 503s
        except Exception as e:  # a bad frame never closes the socket
            self.send({"type": "error", "id": rid, "status": status_for(e),
                       "error": message_for(e)})
            return
        for old in self.jobs.values():  # superseded: stop them, the newest is what matters
            old.superseded = True
            old.cancel()
        job = self.completer.new_job(rid, req, max_tokens, budget)
        self.jobs[rid] = job
        self.completer.submit(job, self.send)

    def on_close(self) -> None:
        for job in list(getattr(self, "jobs", {}).values()):
            job.cancel()


class CompletionsHandler(OpenAIHandler):
    """OpenAI's legacy ``POST /v1/completions``: ``prompt``, ``suffix``, ``max_tokens``,
    ``stop``, ``stream`` and the sampling fields of the chat route. ``suffix`` is used when the
    model has fill-in-the-middle tokens and otherwise accepted and ignored."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        cfg = self.state.config
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or model not in self.model_names()):
            raise RequestError(404, f"model {model!r} is not loaded here; this server serves "
                                    f"{self.model_id()!r}")
        if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
            raise RequestError(400, "only n=1 (and best_of=1) is supported")
        if body.get("logprobs") is not None or body.get("echo"):
            raise RequestError(400, "logprobs and echo are not supported")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(400, "prompt must be a string (or a list of one string)")
        suffix = body.get("suffix") or ""
        if not isinstance(suffix, str):
            raise RequestError(400, "suffix must be a string")
        if len(prompt) + len(suffix) > MAX_PROMPT_CHARS:
            raise RequestError(413, f"prompt and suffix exceed {MAX_PROMPT_CHARS} characters")
        sampling: dict[str, Any] = {"max_tokens": check_max_tokens(body.get("max_tokens"), cfg, 16)}
        stops = check_stop(body.get("stop"), cfg)
        for k in ("temperature", "top_p", "top_k", "seed", "repetition_penalty"):
            if body.get(k) is not None:
                sampling[k] = body[k]
        try:
            minicpm.SamplingParams.from_kwargs(**sampling, stop=stops)
        except (ValueError, TypeError) as e:
            raise RequestError(400, str(e)) from e
        fim = completion.fim_tokens(self.host.engine) if suffix and self.host.engine else None
        if fim is not None:
            prompt = f"{fim.prefix}{prompt}{fim.suffix}{suffix}{fim.middle}"
            stops += [fim.prefix, fim.suffix, fim.middle]
        if stops:
            sampling["stop"] = stops
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        job = Job(id="cmpl-" + uuid.uuid4().hex[:24], build_request=raw_prompt(prompt),
                  sampling=sampling, truncate="error")
        self.job = job
        self.host.submit(job)
        created = int(time.time())
        first = await self.next_event(job)
        if isinstance(first, Failed):  # before any text: still a plain 4xx/5xx
            self.send_error_json(first.status, first.message)
            return
        if stream:
            await self._stream(job, first, created, include_usage)
        else:
            await self._plain(job, first, created)

    def _obj(self, job: Job, created: int, text: str, finish: str | None) -> dict[str, Any]:
        return {"id": job.id, "object": "text_completion", "created": created,
                "model": self.model_id(),
                "choices": [{"text": text, "index": 0, "logprobs": None,
                             "finish_reason": finish}]}

    async def _plain(self, job: Job, ev: Any, created: int) -> None:
        parts: list[str] = []
        while not isinstance(ev, (Done, Failed)):
            if isinstance(ev, Delta):
                parts.append(ev.text)
            ev = await self.next_event(job)
        if isinstance(ev, Failed):
            self.send_error_json(ev.status, ev.message)
            return
        out = self._obj(job, created, "".join(parts), finish_reason(ev.usage.finish_reason))
        out["usage"] = usage_counts(ev.usage)
        self.finish(out)

    async def _stream(self, job: Job, ev: Any, created: int, include_usage: bool) -> None:
        self.start_sse()
        try:
            while True:
                if isinstance(ev, Delta):
                    await self.send_sse(self._obj(job, created, ev.text, None))
                elif isinstance(ev, Failed):  # headers are gone: report in-band
                    await self.send_sse({"error": {"message": ev.message, "type": "server_error",
                                                "code": ev.status}})
                    break
                elif isinstance(ev, Done):
                    await self.send_sse(self._obj(job, created, "", finish_reason(ev.usage.finish_reason)))
                    if include_usage:
                        last = self._obj(job, created, "", None)
                        last["choices"], last["usage"] = [], usage_counts(ev.usage)
                        await self.send_sse(last)
                    break
                ev = await self.next_event(job)
            self.write("data: [DONE]\n\n")
            await self.flush()
            self.finish()
        except StreamClosedError:
            self.host.cancel(job)  # the client went away: stop generating


ROUTES: list[tuple[str, Any]] = [
    ("minicpm/complete", CompletionWebSocket),
    ("minicpm/v1/completions", CompletionsHandler),
]


def shutdown(settings: dict[str, Any]) -> None:
    comp = settings.get("minicpm_inline")
    if comp is not None:
        comp.shutdown()


__all__ = ["ROUTES", "CompletionWebSocket", "CompletionsHandler", "InlineCompleter", "shutdown"]
