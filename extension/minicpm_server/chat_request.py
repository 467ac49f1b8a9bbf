"""A WebSocket chat frame → a queued ``Job``: every limit checked up front (no work on the
event loop beyond counting), images decoded in a worker, the prompt assembled by
``minicpm.prompts.assemble`` once the engine is known (context budget and image handling
depend on the loaded model)."""

from __future__ import annotations

import math
import threading
from typing import Any

import minicpm
from minicpm import prompts, templates
from minicpm.sampling import SamplingParams

from .config import MiniCPM
from .engine_host import Job
from .errors import RequestError
from .images import ImageUpload, decode_uploads

MAX_STOP_CHARS = 256
MAX_ID_CHARS = 128


def check_sampling(sampling: Any, cfg: MiniCPM) -> dict[str, Any]:
    """Validate sampling options and apply the server's caps (stop strings, max_tokens)."""
    if sampling is None:
        return {}
    if not isinstance(sampling, dict):
        raise RequestError(400, "sampling must be an object")
    mt = sampling.get("max_tokens")
    if mt is not None:
        # JSON numbers may be floats (1e309 is inf): only whole numbers in range pass.
        if isinstance(mt, bool) or not isinstance(mt, (int, float)) or not math.isfinite(mt) \
                or mt != int(mt):
            raise RequestError(400, "max_tokens must be a whole number")
        if not 1 <= mt <= cfg.max_tokens_limit:
            raise RequestError(400, f"max_tokens must be between 1 and {cfg.max_tokens_limit} "
                                    "(c.MiniCPM.max_tokens_limit)")
    stop = sampling.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise RequestError(400, "stop must be a string or a list of strings")
        if len(stops) > cfg.max_stop:
            raise RequestError(400, f"{len(stops)} stop strings; the limit is {cfg.max_stop} "
                                    "(c.MiniCPM.max_stop)")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise RequestError(400, f"a stop string is longer than {MAX_STOP_CHARS} characters")
    for k in ("temperature", "top_p", "repetition_penalty"):
        v = sampling.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            raise RequestError(400, f"{k} must be a number")
    for k in ("top_k", "seed"):
        v = sampling.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise RequestError(400, f"{k} must be a whole number")
    SamplingParams.from_kwargs(**sampling)  # ValueError names any other bad option
    return dict(sampling)


def check_messages(raw: Any, cfg: MiniCPM) -> list[dict[str, str]]:
    if isinstance(raw, list) and len(raw) > cfg.max_messages:
        raise RequestError(400, f"{len(raw)} messages; the limit is {cfg.max_messages} "
                                "(c.MiniCPM.max_messages)")
    return templates.normalize_messages(raw)


async def chat_job(frame: dict[str, Any], cfg: MiniCPM) -> Job:
    rid = frame.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "" \
            or len(str(rid)) > MAX_ID_CHARS:
        raise RequestError(400, f"a chat frame needs an 'id' (a string of 1-{MAX_ID_CHARS} "
                                "characters)")
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
                                cancel=cancel)

    return Job(id=str(rid), build_request=prepare, sampling=sampling, truncate=truncate)
