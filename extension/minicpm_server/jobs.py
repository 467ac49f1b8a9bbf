"""One generation request type for every route (chat socket, OpenAI routes, magics): a
``Job`` whose ``prepare`` says what to ask the engine once it is known."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minicpm.prompts import Assembled

from .events import Event


@dataclass(frozen=True)
class RawPrompt:
    """What a raw completion's ``prepare`` gives: the prompt as is (no chat template)."""

    text: str


# (engine, cancel) -> what the engine is asked: an ``Assembled`` conversation (engine.chat) or
# a ``RawPrompt`` (engine.complete), made once the engine is known (context budgets and image
# handling depend on the loaded model). Runs in a generation thread; it may raise
# minicpm.prompts.AssemblyCancelled when the job is stopped.
Prepare = Callable[[Any, threading.Event], Assembled | RawPrompt]


def raw_prompt(text: str) -> Prepare:
    return lambda engine, cancel: RawPrompt(text)


@dataclass(eq=False)
class Job:
    """One generation request: ``prepare`` says what to ask the engine (chat or raw prompt),
    ``sampling`` goes to the engine as is. ``events`` carries typed events (``events.py``) to
    the handler that owns it."""

    id: str
    prepare: Prepare
    sampling: dict[str, Any] = field(default_factory=dict)
    truncate: str = "error"
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    position: int = 0
    finished: bool = False

    def cancel(self) -> None:
        """Stop before the next token (the engine checks this event every token)."""
        self.cancel_event.set()
