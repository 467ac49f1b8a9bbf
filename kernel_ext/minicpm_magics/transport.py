"""Where answers come from: the Jupyter server's shared engine (``minicpm_server``, see
docs/protocol.md) when this kernel's server runs it, else an engine loaded in the kernel.

The server side is in server_transport.py. Both stream a :class:`Reply`: iterate it in the kernel's main thread for text deltas, so a
kernel interrupt (KeyboardInterrupt) lands in our loop and can ``cancel()`` generation."""

from __future__ import annotations

import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from minicpm import prompts
from minicpm.errors import MiniCPMError
from minicpm.worker import load_engine

POLL_S = 0.1  # how often the main thread wakes while waiting: keeps interrupts prompt
REST_TIMEOUT_S = 5.0
INACTIVITY_TIMEOUT_S = 600.0  # a queued request may wait behind others for a long time


class TransportError(MiniCPMError):
    """The engine or server refused or failed a request; the message is for the user."""


@dataclass
class Prompt:
    """One request: conversation (history + new user question), context parts, sampling."""

    messages: list[dict[str, str]]
    context: list[dict[str, Any]] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    model: str | None = None


class Reply(ABC):
    """A streaming answer. ``model`` and ``notice`` are known once the first delta arrives."""

    model: str = ""
    notice: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any]

    @abstractmethod
    def __iter__(self) -> Iterator[str]: ...

    @abstractmethod
    def cancel(self) -> None:
        """Stop generating; iterating again then ends soon with finish_reason 'cancelled'.
        (Each ``iter()`` resumes the same stream: an interrupt ends one loop, not the reply.)"""

    def close(self) -> None:
        """Release the connection (idempotent)."""
        return None


class Transport(ABC):
    kind: str  # "in-process" | "server"

    @abstractmethod
    def start(self, prompt: Prompt) -> Reply: ...

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """{'transport', 'where', 'state', 'model' (label or None), 'hint'}."""

    @abstractmethod
    def models(self) -> tuple[list[dict[str, Any]], str | None]: ...

    @abstractmethod
    def use(self, model: str) -> str:
        """Load ``model`` (blocking until ready); returns its label."""


# --- in-process --------------------------------------------------------------------------------
class _ThreadReply(Reply):
    """Runs a Generation in a worker thread; the caller's thread only waits on a queue, so
    an interrupt never lands inside llama.cpp's evaluation."""

    def __init__(self, run: Any, model: str, notice: str | None):
        self.model, self.notice = model, notice
        self.usage = {}
        self._cancel = threading.Event()
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._work, args=(run,), daemon=True,
                                        name="minicpm-generate")
        self._thread.start()

    def _work(self, run: Any) -> None:
        try:
            gen = run(self._cancel)
            for delta in gen:
                self._q.put(("delta", delta))
            self._q.put(("done", gen.usage))
        except BaseException as e:  # handed to the caller's thread, shown there
            self._q.put(("error", e))

    def __iter__(self) -> Iterator[str]:
        while self.finish_reason is None:
            try:
                kind, value = self._q.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "delta":
                yield value
            elif kind == "done":
                self.finish_reason = value.finish_reason or "stop"
                self.usage = value.to_dict()
                return
            else:
                self.finish_reason = "error"
                if isinstance(value, (MiniCPMError, ValueError)):
                    raise TransportError(str(value)) from value
                raise value

    def cancel(self) -> None:
        self._cancel.set()


class InProcessTransport(Transport):
    """Engines loaded in this kernel, lazily, once each (at most ``max_engines`` kept)."""

    kind = "in-process"

    def __init__(self, load_options: dict[str, Any] | None = None, max_engines: int = 2):
        self.load_options = dict(load_options or {})
        self.max_engines = max_engines
        self.current: str | None = None  # None: the default (best local MiniCPM or stand-in)
        self._engines: dict[str | None, Any] = {}
        self._lock = threading.Lock()  # the chat widget loads from a worker thread

    def engine(self, model: str | None = None) -> Any:
        key = model if model is not None else self.current
        with self._lock:
            old = self._engines.get(key)
            if old is not None and not getattr(old, "alive", True):  # its process died
                self._engines.pop(key)
            if key not in self._engines:
                try:
                    # In an engine worker process: a native crash or an out-of-memory kill
                    # costs an error in the cell, not the kernel.
                    eng = load_engine(key, **self.load_options)
                except (MiniCPMError, ValueError) as e:
                    raise TransportError(str(e)) from e
                while len(self._engines) >= self.max_engines:
                    old_key = next(iter(self._engines))
                    self._engines.pop(old_key).close()
                self._engines[key] = eng
            return self._engines[key]

    def start(self, prompt: Prompt) -> Reply:
        engine = self.engine(prompt.model)
        messages, images, notice = assemble(prompt, engine)

        def run(cancel: threading.Event) -> Any:
            return engine.chat(messages, images=images, cancel=cancel, truncate="left",
                               **prompt.sampling)

        return _ThreadReply(run, engine.info.label, notice)

    def status(self) -> dict[str, Any]:
        eng = self._engines.get(self.current)
        if eng is not None:
            info = eng.info
            return {"transport": self.kind, "where": "this kernel", "state": "ready",
                    "model": info.label, "backend": f"{info.backend}/{info.device}",
                    "quantization": info.quantization, "context_length": info.context_length,
                    "hint": info.hint}
        from minicpm.catalogue import STANDIN_HINT, resolve

        try:
            r = resolve(self.current, model_dirs=self.load_options.get("model_dirs"))
            label = f"{r.name} (stand-in)" if r.stand_in else r.name
            return {"transport": self.kind, "where": "this kernel", "state": "not loaded",
                    "model": label, "hint": STANDIN_HINT if r.stand_in else None}
        except MiniCPMError as e:
            return {"transport": self.kind, "where": "this kernel", "state": "error",
                    "model": None, "hint": str(e)}

    def models(self) -> tuple[list[dict[str, Any]], str | None]:
        from minicpm.catalogue import list_models

        eng = self._engines.get(self.current)
        return list_models(self.load_options.get("model_dirs")), (
            eng.info.model if eng is not None else self.current)

    def use(self, model: str) -> str:
        from minicpm.catalogue import resolve

        try:  # fail fast on a bad name, before dropping the engine we have
            resolve(model, model_dirs=self.load_options.get("model_dirs"))
        except (MiniCPMError, ValueError) as e:
            raise TransportError(str(e)) from e
        eng = self.engine(model)
        self.current = model
        return eng.info.label


def assemble(prompt: Prompt, engine: Any) -> tuple[list[dict[str, str]], list[Any], str | None]:
    """Messages, images and notice for Engine.chat, by the assembler the server uses too
    (``minicpm.prompts.assemble``): system prompt, context on the last user turn, fitted to
    the context window when the backend can count tokens."""
    from minicpm.images import to_pil

    images: dict[int, Any] = {}
    for i, p in enumerate(prompt.context):
        if p.get("kind") == "image" and p.get("data"):
            try:
                images[i] = to_pil(p["data"])
            except MiniCPMError as e:
                raise TransportError(f"context[{i}]: {e}") from e
    a = prompts.assemble(engine, prompt.messages, prompt.context, images,
                         max_tokens=prompt.sampling.get("max_tokens"))
    return a.messages, a.images, a.notice


# --- choosing one ------------------------------------------------------------------------------
def choose(mode: str = "auto", load_options: dict[str, Any] | None = None) -> Transport:
    """mode: auto | server | in-process (also MINICPM_TRANSPORT)."""
    mode = os.environ.get("MINICPM_TRANSPORT", mode).replace("_", "-")
    if mode in ("in-process", "inprocess"):
        return InProcessTransport(load_options)
    from .server_transport import find_server

    server = find_server()
    if server is not None:
        return server
    if mode == "server":
        raise TransportError("no Jupyter server with minicpm_server was found for this kernel "
                             "(set MINICPM_SERVER_URL and MINICPM_SERVER_TOKEN)")
    return InProcessTransport(load_options)
