"""Helpers of the client that read what the worker sends back: a dead worker's last words,
the end of a generation closed early, log-probabilities and usage."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from ..api import Generation
from ..backends.base import Usage

CLOSE_WAIT_S = 10.0  # a generation closed early waits this long for the worker to stop
# What explains a death, in llama.cpp's output: its asserts, aborts and C++ exceptions.
_FATAL = re.compile(r"GGML_ASSERT|GGML_ABORT|terminate called|what\(\)|error|insufficient memory",
                    re.IGNORECASE)


def last_words(tail: list[str], fallback: bool = True) -> list[str]:
    """The lines of a dead worker's stderr that say why: the last fatal-looking ones (a
    GGML_ASSERT with its source path shortened), else (``fallback``) the last few."""
    fatal = [t for t in tail if _FATAL.search(t)][-2:]
    lines = fatal or ([t for t in tail if t.strip()][-3:] if fallback else [])
    return [re.sub(r"^\S*/vendor/(llama\.cpp/)", r"\1", t.strip()) for t in lines]


def finish_early(w: Any, rid: int, q: queue.SimpleQueue[tuple[str, Any]],
                  usage: Usage, cancelled: bool) -> None:
    """A generation closed before its end: cancel it in the worker and wait (a token, at
    most ``CLOSE_WAIT_S``) for its final usage, so that ``usage`` is complete after close and
    the engine is free for the next request, as with an in-process Generation."""
    try:
        if not cancelled:
            w.send("cancel", rid)
        end = time.monotonic() + CLOSE_WAIT_S
        while (left := end - time.monotonic()) > 0:
            what, value = q.get(timeout=left)
            if what == "done":
                fill_usage(usage, value[0])
                return
            if what == "error":
                return
    except Exception:  # the worker died meanwhile, or is slow: the usage stays partial
        pass


class Replies:
    """The worker's replies to request ``rid``, (kind, value) as they come, while ``cancel`` is
    watched every ``poll_s``: once it is set (also a YieldingEvent's pre-emption) the worker is
    told, once; ``cancelled`` says whether it was."""

    def __init__(self, w: Any, rid: int, q: queue.SimpleQueue[tuple[str, Any]],
                 cancel: threading.Event | None, poll_s: float):
        self.w, self.rid, self.q, self.cancel, self.poll_s = w, rid, q, cancel, poll_s
        self.cancelled = False

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            if not self.cancelled and self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
                self.w.send("cancel", self.rid)
            try:
                yield self.q.get(timeout=self.poll_s)
            except queue.Empty:
                continue


def extend_logprobs(holder: list[Generation], lps: list[dict[str, Any]] | None) -> None:
    if lps:
        gen = holder[0]
        if getattr(gen, "token_logprobs", None) is None:
            gen.token_logprobs = []  # type: ignore[attr-defined]
        gen.token_logprobs.extend(lps)  # type: ignore[attr-defined]


def fill_usage(usage: Usage, values: dict[str, Any]) -> None:
    known = {f.name for f in fields(usage)}
    for k, v in values.items():  # unknown fields too: a newer Usage's fields survive
        if k in known or not hasattr(type(usage), k):
            setattr(usage, k, v)
