"""The pre-read (issue 25): while a notebook is open with the sidebar, the server reads the
prompt prefix its next question would carry (system prompt, the conversation so far, the
context the sidebar would attach) into the engine's prompt cache in idle time, so that the
question, when it comes, resumes from there.

- ``POST /minicpm/preread`` {path, messages, context, sampling} (``preread_api.py``, Jupyter
  auth like every route): the sidebar's would-be chat frame without the question. Its limits
  are the chat's (``chat_request.chat_job`` checks them before any work).
- The prefix is built by the chat's own code: the job ``chat_job`` makes for the same frame
  with a marker as the question is assembled against the engine, rendered, and cut where the
  marker starts, so the real request's prompt starts with exactly these tokens.
- Lowest priority: a pre-read runs only when no request is queued or running; a request that
  arrives (``EngineHost.submit``) cancels it, and any chat/completion that asks the engine
  meanwhile (the inline-completion lane too) makes it stop at its next chunk (``Engine.prefill``).
- One pending pre-read per notebook path, the newest replaces the older (and stops it if it
  is the one running); at most ``MAX_PENDING`` notebooks wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import message_for
from .jobs import Job, RawPrompt

if TYPE_CHECKING:
    from .engine_host import EngineHost

log = logging.getLogger("minicpm_server")

CHUNK_TOKENS = 64  # a request waits at most one chunk (MiniCPM-2B on 2 cores: ~100-150 ms)
MAX_PENDING = 8
MAX_RETRIES = 2  # a pre-read that yielded to an inline completion is tried again this often
# Where the question goes: the prefix ends just before it. Private-use brackets: no notebook
# or template writes them, and they survive every template we render.
QUESTION_MARK = "\u27e6minicpm-pre-read-question\u27e7"


@dataclass(eq=False)
class Preread:
    path: str
    job: Job  # the chat job for the frame with QUESTION_MARK as the question
    received: float = field(default_factory=time.monotonic)
    retries: int = 0


class Prereads:
    """The pre-read queue of one ``EngineHost`` (all methods on the event loop)."""

    def __init__(self, host: EngineHost):
        self.host = host
        self.pending: OrderedDict[str, Preread] = OrderedDict()
        self.running: Preread | None = None
        self.last: dict[str, Any] | None = None
        self.counts = {"done": 0, "cancelled": 0, "replaced": 0, "failed": 0, "skipped": 0}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minicpm-preread")

    @property
    def enabled(self) -> bool:
        return bool(self.host.config.preread)

    def offer(self, p: Preread) -> None:
        """Queue ``p``; it replaces (and stops) an older pre-read of the same notebook."""
        if self.pending.pop(p.path, None) is not None:
            self.counts["replaced"] += 1
        if self.running is not None and self.running.path == p.path:
            self.running.job.cancel()
        self.pending[p.path] = p
        while len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)
            self.counts["replaced"] += 1
        self.maybe_start()

    def preempt(self) -> None:
        """A request arrived: the running pre-read stops at its next chunk."""
        if self.running is not None:
            self.running.job.cancel()

    def maybe_start(self) -> None:
        h = self.host
        if (self.running is not None or not self.pending or not self.enabled
                or h.state != "ready" or h.engine is None or h.running or h.waiting):
            return
        _, p = self.pending.popitem(last=True)  # the notebook edited last
        self.running = p
        fut = h.loop.run_in_executor(self._pool, read_prefix, p, h.engine)
        fut.add_done_callback(lambda f: self._ended(p, f))

    def _ended(self, p: Preread, fut: asyncio.Future[dict[str, Any]]) -> None:
        self.running = None
        try:
            out = dict(fut.result())
        except BaseException as e:  # the engine died, a bad frame: the next one may work
            if not p.job.cancel_event.is_set():
                log.warning("pre-read of %s failed: %s", p.path, message_for(e))
            out = {"failed": message_for(e), "cancelled": p.job.cancel_event.is_set()}
        out.update(path=p.path, waited_s=round(time.monotonic() - p.received, 3))
        if out.get("failed") and not out["cancelled"]:
            self.counts["failed"] += 1
        elif out.get("cancelled"):
            self.counts["cancelled"] += 1
            # yielded to a request that did not come through the queue (inline completion):
            # read the rest later, unless a newer pre-read of this notebook is waiting
            if not p.job.cancel_event.is_set() and p.retries < MAX_RETRIES \
                    and p.path not in self.pending:
                p.retries += 1
                self.pending[p.path] = p
        elif out.get("supported") is False:
            self.counts["skipped"] += 1
        else:
            self.counts["done"] += 1
        self.last = out
        self.maybe_start()

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "running": self.running.path if self.running else None,
                "pending": len(self.pending), "counts": dict(self.counts), "last": self.last}

    def shutdown(self) -> None:
        self.pending.clear()
        self.preempt()
        self._pool.shutdown(wait=False, cancel_futures=True)


def read_prefix(p: Preread, engine: Any) -> dict[str, Any]:
    """In the pre-read thread: assemble the chat as the real request will, cut it where the
    question goes, and prefill that."""
    what = p.job.build_request(engine, p.job.cancel_event)
    if isinstance(what, RawPrompt):  # a cell being edited: inline completion's prompt as is
        return engine.prefill(what.text, cancel=p.job.cancel_event, chunk_tokens=CHUNK_TOKENS)
    if getattr(what, "images", None):
        return {"supported": False, "reason": "images go through the vision projector, which "
                                              "keeps no prompt cache"}
    text = engine.render(what.messages)
    cut = text.find(QUESTION_MARK)
    if cut <= 0:
        return {"supported": False, "reason": "the chat template hides where the question goes"}
    out = engine.prefill(text[:cut], cancel=p.job.cancel_event, chunk_tokens=CHUNK_TOKENS)
    out["context_truncated"] = bool(getattr(what, "truncated", False))
    return out
