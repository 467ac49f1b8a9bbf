"""A WebSocket chat frame → a queued ``Job``: validation up front, prompt assembly once the
engine is known (context budget and image handling depend on the loaded model)."""

from __future__ import annotations

from typing import Any

import minicpm
from minicpm import prompts, templates
from minicpm.sampling import SamplingParams

from .config import MiniCPM
from .engine_host import Job
from .errors import RequestError
from .images import DecodedImage, decode_image

NO_VISION_NOTE = "not shown: this model cannot see images, answer from the text around it"


def check_sampling(sampling: Any) -> dict[str, Any]:
    if sampling is None:
        return {}
    if not isinstance(sampling, dict):
        raise RequestError(400, "sampling must be an object")
    SamplingParams.from_kwargs(**sampling)  # ValueError names the bad option
    return dict(sampling)


def chat_job(frame: dict[str, Any], cfg: MiniCPM) -> Job:
    rid = frame.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
        raise RequestError(400, "a chat frame needs an 'id' (string)")
    messages = templates.normalize_messages(frame.get("messages"))
    parts = prompts.validate_parts(frame.get("context"))
    sampling = check_sampling(frame.get("sampling"))
    truncate = frame.get("truncate", "error")
    if truncate not in ("error", "left"):
        raise RequestError(400, "truncate must be 'error' or 'left'")
    images: dict[int, DecodedImage] = {}
    for i, p in enumerate(parts):
        if p["kind"] == "image":
            images[i] = decode_image(p["data"], max_bytes=cfg.max_image_bytes,
                                     max_pixels=cfg.max_image_pixels, label=f"context[{i}]")
    user_idx = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if user_idx is None:
        raise RequestError(400, "messages need at least one user message")

    job = Job(id=str(rid), sampling=sampling, truncate=truncate)

    def prepare(engine: minicpm.Engine) -> tuple[list[dict[str, Any]], list[Any], str | None]:
        info = engine.info
        pil_images: list[Any] = []
        notice = None
        shown = []
        for i, p in enumerate(parts):
            p = {k: v for k, v in p.items() if k != "data"}
            if i in images:
                desc = images[i].describe()
                if info.vision:
                    pil_images.append(images[i].image)
                    p["summary"] = p.get("summary") or f"{desc}, attached"
                else:
                    # Degrade, don't fail: the model gets the size (and any summary the client
                    # computed), and is told it cannot see the picture.
                    extra = f"; summary: {p['summary']}" if p.get("summary") else ""
                    p["summary"] = f"{desc} ({NO_VISION_NOTE}){extra}"
                    notice = (f"{info.label} cannot see images: it was given only the image's "
                              "size and any text summary. Load a MiniCPM-V model to ask about "
                              "pictures.")
            shown.append(p)
        msgs = [dict(m) for m in messages]
        if msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": prompts.SYSTEM_PROMPT})
            idx = user_idx + 1
        else:
            idx = user_idx
        count = _token_counter(engine)
        budget = None
        if count is not None:
            ctx = info.context_length
            max_tokens = int(sampling.get("max_tokens") or engine.defaults.max_tokens)
            others = sum(count(m["content"]) for m in msgs) + 16 * len(msgs)
            budget = max(64, ctx - min(max_tokens, ctx // 4) - others)
        text, truncated = prompts.build_user_message(msgs[idx]["content"], shown, count, budget)
        msgs[idx]["content"] = text
        job.meta["context_truncated"] = truncated
        return msgs, pil_images, notice

    job.prepare = prepare
    return job


def _token_counter(engine: minicpm.Engine) -> Any:
    try:
        engine.count_tokens("x")
    except NotImplementedError:  # remote backends do not tokenize locally
        return None
    return engine.count_tokens
