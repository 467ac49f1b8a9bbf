"""OpenAI-compatible ``/minicpm/v1/chat/completions``: plain and SSE, structured outputs
(``response_format``), tools (``tool_calls`` parsed from the text by ``minicpm.tools``,
streamed as OpenAI streams them), ``logprobs``, ``n`` choices (run one after another; the
prompt cache makes the repeated prefill nearly free).

Images arrive as ``image_url`` data URIs; a text-only model answers 400 (a programmatic
client should know its image was not seen, not get a guess)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

import minicpm
from minicpm.grammar import check_tools, response_format_grammar
from minicpm.prompts import Assembled
from minicpm.tools import ToolCallStream, check_tool_choice, parse_tool_calls

from .chat_request import check_messages
from .engine_host import Job
from .errors import RequestError
from .events import Delta, Done, Event, Failed
from .images import ImageUpload, decode_uploads
from .openai_api import OpenAIHandler, add_usage, finish_reason, usage_body
from .validation import check_sampling, check_whole

# OpenAI fields we accept and map; other fields (user, …) are ignored. top_k,
# repetition_penalty and ignore_eos are the extensions vLLM and llama-server accept too.
SAMPLING_MAP = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens",
                "seed": "seed", "stop": "stop", "repetition_penalty": "repetition_penalty",
                "ignore_eos": "ignore_eos", "frequency_penalty": "frequency_penalty",
                "presence_penalty": "presence_penalty", "logit_bias": "logit_bias",
                "logprobs": "logprobs", "top_logprobs": "top_logprobs"}
STRUCTURED = ("response_format", "tools", "tool_choice", "parallel_tool_calls")
MAX_N = 8
MESSAGE_EXTRAS = ("tool_calls", "tool_call_id")


def _parse_messages(raw: Any, cfg: Any) -> tuple[list[dict[str, Any]], list[ImageUpload]]:
    """OpenAI messages (string or part-list content) → text messages (tool calls and tool
    results kept) + the images, not yet decoded (that happens in a worker, after the count
    and size checks)."""
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
        extras = {k: m[k] for k in MESSAGE_EXTRAS if m.get(k) is not None}
        flat.append({"role": m.get("role"), "content": content if content is not None else "",
                     **extras})
    return check_messages(flat, cfg), images


def check_structured(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """response_format / tools / tool_choice, checked now (a bad schema is a 400 before any
    queueing) → (the options for Engine.chat, the tool mode)."""
    opts = {k: body[k] for k in STRUCTURED if body.get(k) is not None}
    response_format_grammar(opts.get("response_format"))  # raises SchemaError (400)
    functions = check_tools(opts["tools"]) if opts.get("tools") else []
    mode, _ = check_tool_choice(opts.get("tool_choice"), bool(functions))
    if not functions:
        opts.pop("tools", None)
        opts.pop("tool_choice", None)  # "none" without tools: nothing to say
    return opts, mode


class ChatCompletionsHandler(OpenAIHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        self.check_served(body.get("model"))
        n = check_whole(body.get("n", 1) if body.get("n") is not None else 1, "n", 1, MAX_N)
        cfg = self.state.config
        messages, uploads = _parse_messages(body.get("messages"), cfg)
        sampling = check_sampling({SAMPLING_MAP[k]: v for k, v in body.items()
                                   if k in SAMPLING_MAP and v is not None}, cfg)
        if sampling.get("top_logprobs") and not sampling.get("logprobs"):
            raise RequestError(400, "top_logprobs needs logprobs: true", code=None)
        structured, self.tool_mode = check_structured(body)
        self.want_logprobs = bool(sampling.get("logprobs"))
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

        self.completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]

        def make_job(i: int) -> Job:
            s = {**sampling, **structured}
            if i and s.get("seed") is not None:
                s["seed"] = s["seed"] + i  # n choices with a seed: different, reproducible
            return Job(id=f"{self.completion_id}-{i}", build_request=prepare, sampling=s)

        self.created = int(time.time())
        job = self.submit(make_job(0))
        first = await self.first_event(job)
        if first is None:
            return
        if stream:
            await self.run_sse(lambda: self._stream(job, first, n, make_job, include_usage))
        else:
            await self._plain(job, first, n, make_job)

    def _choice_end(self, text: str, usage: minicpm.Usage) -> tuple[str | None, list[Any], str]:
        """(content, tool_calls, finish_reason) of a finished choice."""
        content, calls = (parse_tool_calls(text) if self.tool_mode != "none" else (text, []))
        reason = finish_reason(usage.finish_reason)
        return content, calls, ("tool_calls" if calls and reason == "stop" else reason)

    async def _plain(self, job: Job, ev: Event, n: int, make_job: Any) -> None:
        choices, total = [], minicpm.Usage()
        for i in range(n):
            if i:
                job = self.submit(make_job(i))
                ev = await self.next_event(job)
            text, lps, ev = await self.collect(job, ev)
            if isinstance(ev, Failed):
                self.send_error_json(ev.status, ev.message, code=ev.code)
                return
            assert isinstance(ev, Done)
            content, calls, reason = self._choice_end(text, ev.usage)
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            choices.append({"index": i, "message": message, "finish_reason": reason,
                            "logprobs": {"content": lps} if self.want_logprobs else None})
            add_usage(total, ev.usage)
        self.finish({"id": self.completion_id, "object": "chat.completion",
                     "created": self.created, "model": self.model_id(), "choices": choices,
                     "usage": usage_body(total)})

    async def _stream(self, job: Job, ev: Event, n: int, make_job: Any,
                      include_usage: bool) -> None:
        model = self.model_id()
        total = minicpm.Usage()

        def chunk(i: int, delta: dict[str, Any], finish: str | None = None,
                  lps: Any = None) -> dict[str, Any]:
            choice: dict[str, Any] = {"index": i, "delta": delta, "finish_reason": finish}
            if self.want_logprobs:
                choice["logprobs"] = {"content": list(lps or ())} if lps is not None else None
            return {"id": self.completion_id, "object": "chat.completion.chunk",
                    "created": self.created, "model": model, "choices": [choice]}

        for i in range(n):
            if i:
                job = self.submit(make_job(i))
                ev = await self.next_event(job)
            if not await self._stream_choice(i, job, ev, chunk, total):
                return
        if include_usage:
            await self.send_sse({"id": self.completion_id, "object": "chat.completion.chunk",
                                 "created": self.created, "model": model, "choices": [],
                                 "usage": usage_body(total)})

    async def _stream_choice(self, i: int, job: Job, first: Event, chunk: Any,
                             total: minicpm.Usage) -> bool:
        """One choice's chunks; False after an in-band error."""
        tools = ToolCallStream() if self.tool_mode != "none" else None
        await self.send_sse(chunk(i, {"role": "assistant", "content": ""}))
        async for ev in self.follow(job, first):
            match ev:
                case Delta(text, lps):
                    for delta in self._deltas(tools, tools.feed(text) if tools else None, text):
                        await self.send_sse(chunk(i, delta, lps=lps))
                        lps = ()  # the entries go with the first chunk of this text
                    if lps:
                        await self.send_sse(chunk(i, {}, lps=lps))
                case Failed():
                    await self.send_sse_error(ev)
                    return False
                case Done(usage):
                    for delta in self._deltas(tools, tools.finish() if tools else [], ""):
                        await self.send_sse(chunk(i, delta))
                    reason = finish_reason(usage.finish_reason)
                    if tools is not None and tools.calls and reason == "stop":
                        reason = "tool_calls"
                    await self.send_sse(chunk(i, {}, reason))
                    add_usage(total, usage)
                    return True
        return False  # not reached: follow ends with Done or Failed

    @staticmethod
    def _deltas(tools: ToolCallStream | None, events: Any, text: str) -> list[dict[str, Any]]:
        """Parser events → OpenAI deltas: content, a call's id/type/name, argument fragments."""
        if tools is None:
            return [{"content": text}] if text else []
        out: list[dict[str, Any]] = []
        for e in events:
            if e[0] == "content":
                out.append({"content": e[1]})
            elif e[0] == "call":
                out.append({"tool_calls": [{"index": e[1], "id": e[2], "type": "function",
                                            "function": {"name": e[3], "arguments": ""}}]})
            else:
                out.append({"tool_calls": [{"index": e[1], "function": {"arguments": e[2]}}]})
        return out
