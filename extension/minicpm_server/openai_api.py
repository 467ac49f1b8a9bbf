"""OpenAI-compatible ``/minicpm/v1/chat/completions`` (plain and SSE) and ``/minicpm/v1/models``.

Errors here are OpenAI-shaped (``{"error": {"message", "type", "code"}, "status"}``) so that
OpenAI clients show the message. Images arrive as ``image_url`` data URIs; a text-only model
answers 400 (a programmatic client should know its image was not seen, not get a guess).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

import minicpm
from minicpm.prompts import Assembled

from .chat_request import check_messages, check_sampling
from .engine_host import Job
from .errors import RequestError
from .events import Delta, Done, Event, Failed, Queued, Started
from .handlers import BaseHandler
from .images import ImageUpload, decode_uploads

ALIASES = ("", "default", "minicpm")
# OpenAI fields we accept and map; other fields (user, logprobs, …) are ignored. top_k,
# repetition_penalty and ignore_eos are the extensions vLLM and llama-server accept too.
SAMPLING_MAP = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens",
                "seed": "seed", "stop": "stop", "repetition_penalty": "repetition_penalty",
                "ignore_eos": "ignore_eos"}


class OpenAIHandler(BaseHandler):
    """Errors in OpenAI's shape; the base handler's ``write_error`` calls this."""

    def send_error_json(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        code = {404: "model_not_found", 413: "request_too_large",
                429: "rate_limit_exceeded"}.get(status)
        kind = "invalid_request_error" if status < 500 else "server_error"
        self.finish(json.dumps({"error": {"message": message, "type": kind, "code": code},
                                "status": status}))

    def model_names(self) -> set[str]:
        names = set(ALIASES)
        info = self.host.info
        if info is not None:
            names |= {info.model, info.label}
        for n in (self.host.target, self.state.config.model):
            if n:
                names.add(n)
        return names

    def model_id(self) -> str:
        info = self.host.info
        return info.model if info else (self.host.target or self.state.config.model or "default")

    job: Job | None = None

    async def next_event(self, job: Job) -> Event:
        """The job's next event that the OpenAI protocol knows (queue positions are ours)."""
        while True:
            ev = await job.events.get()
            if not isinstance(ev, (Queued, Started)):
                return ev

    def start_sse(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send_sse(self, obj: dict[str, Any]) -> None:
        self.write(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n")
        await self.flush()

    def on_connection_close(self) -> None:
        # Tornado calls this when the client disconnects mid-request: stop generating.
        if self.job is not None and not self.job.finished:
            self.host.cancel(self.job)
        super().on_connection_close()


class ModelsListHandler(OpenAIHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        info = self.host.info
        data = []
        if info is not None or self.host.target:
            data.append({"id": self.model_id(), "object": "model", "created": 0,
                         "owned_by": "minicpm (local)",
                         "label": info.label if info else None,
                         "stand_in": info.stand_in if info else None,
                         "vision": info.vision if info else None})
        self.finish({"object": "list", "data": data})


def _parse_messages(raw: Any, cfg: Any) -> tuple[list[dict[str, str]], list[ImageUpload]]:
    """OpenAI messages (string or part-list content) → plain text messages + the images, not
    yet decoded (that happens in a worker, after the count and size checks)."""
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "messages must be a non-empty list")
    if len(raw) > cfg.max_messages:
        raise RequestError(400, f"{len(raw)} messages; the limit is {cfg.max_messages} "
                                "(c.MiniCPM.max_messages)")
    images: list[ImageUpload] = []
    flat = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise RequestError(400, f"messages[{i}] must be an object")
        content = m.get("content")
        if isinstance(content, list):
            if len(content) > cfg.max_context_parts:
                raise RequestError(400, f"messages[{i}] has {len(content)} parts; the limit is "
                                        f"{cfg.max_context_parts} (c.MiniCPM.max_context_parts)")
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise RequestError(400, f"messages[{i}].content[{j}] must be an object")
                if part.get("type") == "text":
                    texts.append(str(part.get("text", "")))
                elif part.get("type") == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    images.append(ImageUpload(f"messages[{i}].content[{j}]", url or ""))
                else:
                    raise RequestError(400, f"messages[{i}].content[{j}].type must be "
                                            "'text' or 'image_url'")
            content = "\n".join(texts)
        flat.append({"role": m.get("role"), "content": content if content is not None else ""})
    return check_messages(flat, cfg), images


class ChatCompletionsHandler(OpenAIHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or model not in self.model_names()):
            raise RequestError(404, f"model {model!r} is not loaded here; this server serves "
                                    f"{self.model_id()!r} (see GET /minicpm/v1/models, or load "
                                    "another with POST /minicpm/models/load)")
        if body.get("n", 1) != 1:
            raise RequestError(400, "only n=1 is supported")
        cfg = self.state.config
        messages, uploads = _parse_messages(body.get("messages"), cfg)
        sampling = check_sampling({SAMPLING_MAP[k]: v for k, v in body.items()
                                   if k in SAMPLING_MAP and v is not None}, cfg)
        stream = body.get("stream")
        stream = False if stream is None else stream
        if not isinstance(stream, bool):
            raise RequestError(400, "stream must be true or false")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise RequestError(400, "stream_options must be an object")
        include_usage = bool(options.get("include_usage"))
        images = await decode_uploads(uploads, cfg)

        def prepare(engine: minicpm.Engine, cancel: Any) -> Assembled:
            if images and not engine.info.vision:
                raise RequestError(400, f"{engine.info.label} cannot see images; send text "
                                        "only, or load a MiniCPM-V model")
            return Assembled(messages, [im.image for im in images])

        job = Job(id="chatcmpl-" + uuid.uuid4().hex[:24], prepare=prepare, sampling=sampling)
        self.job = job
        self.host.submit(job)
        created = int(time.time())

        # Wait for the first real event before sending headers: an error that happens before
        # any text (context overflow, images on a text model) is still a plain 4xx.
        first = await self.next_event(job)
        if isinstance(first, Failed):
            self.send_error_json(first.status, first.message)
            return
        if stream:
            await self._stream(job, first, created, include_usage)
        else:
            await self._plain(job, first, created)

    async def _plain(self, job: Job, ev: Event, created: int) -> None:
        parts: list[str] = []
        while not isinstance(ev, (Done, Failed)):
            if isinstance(ev, Delta):
                parts.append(ev.text)
            ev = await self.next_event(job)
        if isinstance(ev, Failed):
            self.send_error_json(ev.status, ev.message)
            return
        usage = ev.usage
        self.finish({
            "id": job.id, "object": "chat.completion", "created": created,
            "model": self.model_id(),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                         "finish_reason": finish_reason(usage.finish_reason)}],
            "usage": _usage(usage),
        })

    async def _stream(self, job: Job, ev: Event, created: int, include_usage: bool) -> None:
        self.start_sse()
        model = self.model_id()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": job.id, "object": "chat.completion.chunk", "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        try:
            await self.send_sse(chunk({"role": "assistant", "content": ""}))
            while True:
                match ev:
                    case Delta(text):
                        await self.send_sse(chunk({"content": text}))
                    case Failed(status, message):
                        # Headers are gone: report in-band, as OpenAI does mid-stream.
                        await self.send_sse({"error": {"message": message, "type": "server_error",
                                                    "code": status}})
                        break
                    case Done(usage):
                        await self.send_sse(chunk({}, finish_reason(usage.finish_reason)))
                        if include_usage:
                            await self.send_sse({"id": job.id, "object": "chat.completion.chunk",
                                              "created": created, "model": model,
                                              "choices": [], "usage": _usage(usage)})
                        break
                ev = await self.next_event(job)
            self.write("data: [DONE]\n\n")
            await self.flush()
            self.finish()
        except StreamClosedError:
            self.host.cancel(job)  # the client went away: stop generating

def finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def usage_counts(usage: minicpm.Usage) -> dict[str, Any]:
    """OpenAI's three token counts."""
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def _usage(usage: minicpm.Usage) -> dict[str, Any]:
    """The counts plus our speed fields (additive, as documented in docs/protocol.md)."""
    return {**usage_counts(usage),
            "tokens_per_second": round(usage.tokens_per_second, 2),
            "time_to_first_token": usage.time_to_first_token}
