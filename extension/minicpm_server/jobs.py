"""One generation request type for every route (chat socket, OpenAI routes, magics): a
``Job`` whose ``build_request`` says what to ask the engine once it is known; ``run_job`` runs
one in a generation thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import minicpm
from minicpm.errors import EngineCrashedError
from minicpm.prompts import Assembled

from .errors import code_for, message_for, status_for
from .events import Delta, Done, Event, Failed, Started

log = logging.getLogger("minicpm_server")


@dataclass(frozen=True)
class RawPrompt:
    """What a raw completion's ``build_request`` gives: the prompt as is (no chat template)."""

    text: str


# (engine, cancel) -> what the engine is asked: an ``Assembled`` conversation (engine.chat) or
# a ``RawPrompt`` (engine.complete), made once the engine is known (context budgets and image
# handling depend on the loaded model). Runs in a generation thread; it may raise
# minicpm.prompts.AssemblyCancelled when the job is stopped.
BuildRequest = Callable[[Any, threading.Event], Assembled | RawPrompt]


def raw_prompt(text: str) -> BuildRequest:
    return lambda engine, cancel: RawPrompt(text)


@dataclass(eq=False)
class Job:
    """One generation request: ``build_request`` says what to ask the engine (chat or raw prompt),
    ``sampling`` goes to the engine as is. ``events`` carries typed events (``events.py``) to
    the handler that owns it."""

    id: str
    build_request: BuildRequest
    sampling: dict[str, Any] = field(default_factory=dict)
    truncate: str = "error"
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    position: int = 0
    finished: bool = False

    def cancel(self) -> None:
        """Stop before the next token (the engine checks this event every token)."""
        self.cancel_event.set()


def run_job(job: Job, engine: Any, loop: asyncio.AbstractEventLoop,
            finish: Callable[[Job, Done | Failed], None],
            count_tokens: Callable[[int], None]) -> None:
    """Run ``job`` on ``engine`` (in a generation thread): its events go to ``job.events``
    through ``loop``; ``finish`` (called on the loop) ends it; ``count_tokens`` adds the
    generated tokens to the server's count (on this thread)."""

    def post(fn: Callable[..., Any], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the server is gone, stop generating
            job.cancel()

    def emit(event: Event) -> None:
        post(job.events.put_nowait, event)

    gen: minicpm.Generation | None = None
    try:
        what = job.build_request(engine, job.cancel_event)
        if isinstance(what, RawPrompt):
            gen = engine.complete(what.text, cancel=job.cancel_event,
                                  truncate=job.truncate, **job.sampling)
            emit(Started(engine.info.label))
        else:
            gen = engine.chat(what.messages, what.images or None, cancel=job.cancel_event,
                              truncate=job.truncate, **job.sampling)
            emit(Started(engine.info.label, what.notice, what.truncated))
        seen = 0
        for delta in gen:
            lps = gen.token_logprobs  # entries arrive before their token's text
            emit(Delta(delta, tuple(lps[seen:]) or None))
            seen = len(lps)
        usage = gen.usage
        if job.cancel_event.is_set():
            usage.finish_reason = "cancelled"
        count_tokens(usage.completion_tokens)
        post(finish, job, Done(usage))
    except BaseException as e:  # every failure becomes an error frame
        if job.cancel_event.is_set():  # stopped (e.g. while the prompt was assembled)
            post(finish, job, Done(cancelled_usage()))
            return
        if status_for(e) >= 500 and not isinstance(e, EngineCrashedError):  # logged once
            log.exception("generation %s failed", job.id)
        post(finish, job, Failed(status_for(e), message_for(e), code_for(e)))
    finally:
        if gen is not None:
            gen.close()  # never raises


def cancelled_usage() -> minicpm.Usage:
    u = minicpm.Usage()
    u.finish_reason = "cancelled"
    return u
