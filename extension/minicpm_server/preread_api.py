"""``POST /minicpm/preread`` (the pre-read, ``preread.py``): the sidebar's would-be chat frame
without its question, checked with the chat's own limits before any work; ``GET`` says how
the pre-reads went (also in ``/minicpm/status`` under ``preread``)."""

from __future__ import annotations

import itertools
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .chat_request import chat_job
from .errors import RequestError
from .handlers import BaseHandler
from .preread import QUESTION_MARK, Preread, Prereads

MAX_PATH_CHARS = 1024
_ids = itertools.count(1)


async def preread_from(body: dict[str, Any], cfg: Any) -> Preread:
    """Check a pre-read body (the chat's limits) and make its job."""
    path = body.get("path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise RequestError(400, f"a pre-read needs 'path' (the notebook's path, 1-"
                                f"{MAX_PATH_CHARS} characters)")
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
