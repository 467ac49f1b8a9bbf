"""A WebSocket chat frame → a queued ``Job``: every limit checked up front (no work on the
event loop beyond counting), images decoded in a worker, the prompt assembled by
``minicpm.prompts.assemble`` once the engine is known (context budget and image handling
depend on the loaded model)."""

from __future__ import annotations

import threading
from typing import Any

import minicpm
from minicpm import prompts, templates

from .config import MiniCPM
from .engine_host import Job
from .errors import RequestError
from .images import ImageUpload, decode_uploads
from .validation import check_request_id, check_sampling


def check_messages(raw: Any, cfg: MiniCPM) -> list[dict[str, str]]:
    if isinstance(raw, list) and len(raw) > cfg.max_messages:
        raise RequestError(400, f"{len(raw)} messages; the limit is {cfg.max_messages} "
                                "(c.MiniCPM.max_messages)")
    return templates.normalize_messages(raw)


async def chat_job(frame: dict[str, Any], cfg: MiniCPM) -> Job:
    rid = check_request_id(frame.get("id"))
    if "chat_id" in frame:
        # One way of saving chats: the client PUTs /minicpm/chats/{id} (docs/protocol.md).
        raise RequestError(400, "chat frames do not save chats (no 'chat_id'); save with "
                                "PUT /minicpm/chats/{id}")
    messages = check_messages(frame.get("messages"), cfg)
    context = frame.get("context")
    if isinstance(context, list) and len(context) > cfg.max_context_parts:
        raise RequestError(400, f"{len(context)} context parts; the limit is "
                                f"{cfg.max_context_parts} (c.MiniCPM.max_context_parts)")
    parts = prompts.validate_parts(context)
    sampling = check_sampling(frame.get("sampling"), cfg)
    context_turn = frame.get("context_turn", "last")
    if context_turn not in prompts.CONTEXT_TURNS:
        raise RequestError(400, "context_turn must be 'last' or 'first'")
    truncate = frame.get("truncate", "error")
    if truncate not in ("error", "left"):
        raise RequestError(400, "truncate must be 'error' or 'left'")
    if not any(m["role"] == "user" for m in messages):
        raise RequestError(400, "messages need at least one user message")
    where = [i for i, p in enumerate(parts) if p["kind"] == "image"]
    decoded = await decode_uploads(
        [ImageUpload(f"context[{i}]", parts[i]["data"]) for i in where], cfg)
    images = dict(zip(where, decoded, strict=True))
    max_tokens = sampling.get("max_tokens")

    def prepare(engine: minicpm.Engine, cancel: threading.Event) -> prompts.Assembled:
        return prompts.assemble(engine, messages, parts, images, max_tokens=max_tokens,
                                cancel=cancel, context_turn=context_turn)

    return Job(id=str(rid), build_request=prepare, sampling=sampling, truncate=truncate)
