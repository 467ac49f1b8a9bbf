"""What a queued generation reports to the handler that owns it, in order:
``Queued*`` → ``Started`` → ``Delta*`` → ``Done`` | ``Failed`` (or ``Failed`` / ``Done`` at once).

Handlers read them with ``match``; nothing else travels on a job's queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import minicpm


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next to run


@dataclass(frozen=True)
class Started:
    label: str  # the engine's label, e.g. "SmolLM2-135M-Instruct (stand-in)"
    notice: str | None = None  # e.g. "this model cannot see images"
    truncated: bool = False  # context parts were cut to fit the window


@dataclass(frozen=True)
class Delta:
    text: str
    # OpenAI logprob entries of the tokens this text completes (when asked for).
    logprobs: tuple[dict, ...] | None = None


@dataclass(frozen=True)
class Done:
    usage: minicpm.Usage


@dataclass(frozen=True)
class Failed:
    status: int
    message: str
    code: str | None = None  # OpenAI's error code, e.g. "context_length_exceeded"


Event = Queued | Started | Delta | Done | Failed


def drain(events: asyncio.Queue[Event], first: Event) -> list[Event]:
    """``first`` plus everything already waiting, consecutive deltas joined into one: a slow
    client gets fewer, larger frames instead of a backlog."""
    out: list[Event] = [first]
    while not events.empty():
        ev = events.get_nowait()
        last = out[-1]
        if isinstance(ev, Delta) and isinstance(last, Delta):
            lps = (last.logprobs or ()) + (ev.logprobs or ())
            out[-1] = Delta(last.text + ev.text, lps or None)
        else:
            out.append(ev)
    return out
