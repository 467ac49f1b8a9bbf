"""``POST /minicpm/preread`` (the pre-read, ``preread.py``): the sidebar's would-be chat frame
without its question, checked with the chat's own limits before any work, or (``kind:
completion``) the inline completion's frame at a cursor, checked with the completion socket's;
``GET`` says how the pre-reads went (also in ``/minicpm/status`` under ``preread``)."""

from __future__ import annotations

import itertools
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from minicpm import completion

from .chat_request import chat_job
from .errors import RequestError
from .handlers import BaseHandler
from .inline import parse_inline
from .jobs import Job, RawPrompt
from .preread import QUESTION_MARK, Preread, Prereads

MAX_PATH_CHARS = 1024
_ids = itertools.count(1)


async def preread_from(body: dict[str, Any], cfg: Any) -> Preread:
    """Check a pre-read body (the chat's limits, or the inline completion's) and make its job."""
    path = body.get("path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise RequestError(400, f"a pre-read needs 'path' (the notebook's path, 1-"
                                f"{MAX_PATH_CHARS} characters)")
    kind = body.get("kind", "chat")
    if kind == "completion":
        return completion_preread(path, body, cfg)
    if kind != "chat":
        raise RequestError(400, "kind must be 'chat' or 'completion'")
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise RequestError(400, "messages must be a list")
    if len(messages) >= cfg.max_messages:
        raise RequestError(400, f"{len(messages)} messages; the limit is {cfg.max_messages} "
                                "(c.MiniCPM.max_messages)")
    frame = {"id": f"preread-{next(_ids)}", "context": body.get("context"),
             "sampling": body.get("sampling"), "context_turn": body.get("context_turn", "last"),
             "messages": [*messages, {"role": "user", "content": QUESTION_MARK}]}
    try:
        job = await chat_job(frame, cfg)
    except ValueError as e:
        raise RequestError(400, str(e)) from e
    return Preread(path, job)


def completion_preread(path: str, body: dict[str, Any], cfg: Any) -> Preread:
    """A cell being edited: the inline completion's prompt at the cursor (the fields of a
    ``complete`` frame, checked by the same rules), under its own key so that it neither
    replaces nor is replaced by the notebook's chat pre-read."""
    req, _max_tokens, budget = parse_inline(body, cfg)

    def build(engine: Any, cancel: Any) -> RawPrompt:
        return RawPrompt(completion.prompt_text(engine, req, budget))

    return Preread(f"completion:{path}", Job(id=f"preread-{next(_ids)}", build_request=build))


class PrereadHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        prereads: Prereads = self.host.prereads
        if not prereads.enabled:
            self.finish({"accepted": False, "reason": "pre-read is off (c.MiniCPM.preread)"})
            return
        p = await preread_from(self.json_body(), self.state.config)
        prereads.offer(p)
        self.set_status(202)
        self.finish({"accepted": True, **prereads.status()})

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.finish(self.host.prereads.status())


ROUTES: list[tuple[str, Any]] = [("minicpm/preread", PrereadHandler)]
