"""One shared engine for the whole server: background loading, a fair FIFO queue, cancel.

Everything here except the worker functions runs on the server's event loop thread, so the
queue needs no locks. Model loading and generation run in threads; they report back with
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import minicpm
from minicpm.catalogue import STANDIN_HINT, resolve
from minicpm.prompts import Assembled

from .config import MiniCPM
from .errors import RequestError, code_for, message_for, status_for
from .events import Delta, Done, Event, Failed, Queued, Started

log = logging.getLogger("minicpm_server")

# (engine, cancel) -> what engine.chat takes: turns a request into engine arguments once the
# engine is known (context budgets and image handling depend on the loaded model). Runs in the
# worker thread; it may raise minicpm.prompts.AssemblyCancelled when the job is stopped.
Prepare = Callable[[minicpm.Engine, threading.Event], Assembled]
_UNRESOLVED = object()

# Assumed read rate for the loading-progress estimate (llama.cpp mmaps; torch reads).
_LOAD_BYTES_PER_S = 400e6


@dataclass(eq=False)
class Job:
    """One generation request. ``events`` carries typed events (``events.py``) to the handler
    that owns it."""

    id: str
    prepare: Prepare | None = None  # chat
    prompt: str | None = None  # raw completion
    sampling: dict[str, Any] = field(default_factory=dict)
    truncate: str = "error"
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    position: int = 0
    finished: bool = False
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def cancel(self) -> None:
        """Stop before the next token (the engine checks this event every token)."""
        self.cancel_event.set()


class EngineHost:
    def __init__(self, config: MiniCPM, loader: Callable[..., minicpm.Engine] = minicpm.load):
        self.config = config
        self._loader = loader
        self.engine: minicpm.Engine | None = None
        self.state = "idle"  # idle | loading | ready | error
        self.error: str | None = None
        self.error_status: int | None = None
        self.target: str | None = None
        self._load_started = 0.0
        self._load_expected_s = 1.0
        self._load_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.running: set[Job] = set()
        self.waiting: deque[Job] = deque()
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                        thread_name_prefix="minicpm-gen")
        self.generated_tokens = 0

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def check_model(self, model: str | None, backend: str | None = None) -> Path | None:
        """Resolve a model name (file-system walks: call it off the event loop) so that an
        unknown one is a 404 at once and not a background failure. Returns the file or
        folder, None for remote."""
        backend = backend or self.config.backend
        if backend == "remote" or self.config.remote_base_url:
            return None
        return resolve(model or None, model_dirs=self.config.model_dirs or None).path

    def start_load(self, model: str | None = None, backend: str | None = None,
                   device: str | None = None, path: Any = _UNRESOLVED) -> None:
        """Load in a background thread; the current engine keeps serving until the new one is
        ready (then it is swapped in, and the old one closed once its generations end).
        ``path``: what ``check_model`` gave; without it the name is resolved in that thread
        (a bad name then shows as the ``error`` state)."""
        model = model if model is not None else (self.config.model or None)
        backend = backend or self.config.backend
        opts = self.config.load_options()
        if device:
            opts["device"] = device
        if backend == "remote" and "base_url" not in opts:
            raise RequestError(400, "backend 'remote' needs c.MiniCPM.remote_base_url")
        self._load_seq += 1
        seq = self._load_seq
        self.state, self.error, self.error_status = "loading", None, None
        self.target = model or (path.name if isinstance(path, Path) else "default")
        self._load_started = time.monotonic()
        self._load_expected_s = 0.5
        loop = self.loop

        def work() -> None:
            try:
                found = self.check_model(model, backend) if path is _UNRESOLVED else path
                self._load_expected_s = 0.5 + _size(found) / _LOAD_BYTES_PER_S
                engine = self._loader(model, backend=backend, **opts)
            except BaseException as e:  # report every failure, never kill the server
                if isinstance(e, (minicpm.MiniCPMError, ValueError)):  # said for a person
                    log.error("loading %s failed: %s", model or "the default model", e)
                else:
                    log.exception("loading %s failed", model or "the default model")
                engine, err = None, e
            else:
                err = None
            try:
                loop.call_soon_threadsafe(self._load_done, seq, engine, err)
            except RuntimeError:  # the server stopped while we loaded
                if engine is not None:
                    engine.close()

        # A daemon thread, not the pool: a long load must not hold up server shutdown.
        threading.Thread(target=work, name="minicpm-load", daemon=True).start()

    def _load_done(self, seq: int, engine: minicpm.Engine | None, err: BaseException | None) -> None:
        if seq != self._load_seq:  # superseded by a later load or an unload
            if engine is not None:
                self._close_later(engine)
            return
        if err is not None:
            self.state, self.error = "error", message_for(err)
            self.error_status = 503 if status_for(err) >= 500 else status_for(err)
            for job in list(self.waiting):
                self._finish(job, Failed(self.error_status, f"model failed to load: {self.error}"))
            self.waiting.clear()
            return
        old, self.engine = self.engine, engine
        self.state = "ready"
        assert engine is not None
        log.info("MiniCPM ready: %r", engine)
        if old is not None:
            self._close_later(old)
        self._pump()

    def unload(self) -> None:
        self._load_seq += 1  # a load in flight is discarded when it lands
        old, self.engine = self.engine, None
        self.state, self.error, self.error_status, self.target = "idle", None, None, None
        if old is not None:
            self._close_later(old)

    def _close_later(self, engine: minicpm.Engine) -> None:
        # Engine.close takes the engine lock, i.e. waits for a running generation to end.
        threading.Thread(target=engine.close, name="minicpm-close", daemon=True).start()

    def shutdown(self) -> None:
        for job in list(self.running) + list(self.waiting):
            job.cancel()
        self.waiting.clear()
        self.unload()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- status ------------------------------------------------------------------------------
    @property
    def info(self) -> minicpm.EngineInfo | None:
        return self.engine.info if self.engine is not None else None

    def progress(self) -> float:
        if self.state == "ready":
            return 1.0
        if self.state != "loading":
            return 0.0
        # An estimate from the file size: llama.cpp has no progress callback worth trusting.
        frac = (time.monotonic() - self._load_started) / self._load_expected_s
        return round(min(0.95, 0.95 * frac), 3)

    def status(self) -> dict[str, Any]:
        info = self.info
        hint = None
        if info is not None:
            hint = info.hint or (STANDIN_HINT if info.stand_in else None)
        return {
            "state": self.state,
            "progress": self.progress(),
            "model": info.to_dict() if info else None,
            "loading": self.target if self.state == "loading" else None,
            "error": self.error,
            "hint": hint,
            "queue": {"running": len(self.running), "waiting": len(self.waiting),
                      "concurrency": self.config.concurrency},
            "cache": self.engine.stats() if self.engine is not None else None,
            "version": minicpm.__version__,
        }

    # --- queue -------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job (FIFO). Its handler reads ``job.events``."""
        if len(self.waiting) >= self.config.max_queue:
            raise RequestError(503, f"the queue is full ({self.config.max_queue} waiting); "
                                    "try again shortly")
        if self.state == "idle":
            self.start_load()  # load at first use
        elif self.state == "error":
            raise RequestError(self.error_status or 503, f"no model loaded: {self.error}")
        self.waiting.append(job)
        self._pump()

    def cancel(self, job: Job) -> None:
        job.cancel()
        if job in self.waiting:
            self.waiting.remove(job)
            self._finish(job, Done(_cancelled_usage()))
            self._report_positions()

    def _pump(self) -> None:
        while self.state == "ready" and self.waiting and len(self.running) < self.config.concurrency:
            job = self.waiting.popleft()
            if job.cancel_event.is_set():
                self._finish(job, Done(_cancelled_usage()))
                continue
            self.running.add(job)
            engine = self.engine
            assert engine is not None
            fut = self.loop.run_in_executor(self._pool, self._work, job, engine)
            fut.add_done_callback(lambda f, j=job: self._job_ended(j, f))
        self._report_positions()

    def _report_positions(self) -> None:
        for i, job in enumerate(self.waiting, start=1):
            if job.position != i:
                job.position = i
                job.events.put_nowait(Queued(i))

    def _job_ended(self, job: Job, fut: asyncio.Future[None]) -> None:
        self.running.discard(job)
        if not job.finished:  # the worker died without reporting (should not happen)
            exc = fut.exception() if not fut.cancelled() else None
            self._finish(job, Failed(500, message_for(exc) if exc else "generation was cancelled"))
        self._pump()

    def _finish(self, job: Job, event: Done | Failed) -> None:
        if not job.finished:
            job.finished = True
            job.events.put_nowait(event)

    # --- worker thread ------------------------------------------------------------------------
    def _work(self, job: Job, engine: minicpm.Engine) -> None:
        loop = self.loop

        def post(fn: Callable[..., Any], *args: Any) -> None:
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed: the server is gone, stop generating
                job.cancel()

        def emit(event: Event) -> None:
            post(job.events.put_nowait, event)

        gen: minicpm.Generation | None = None
        try:
            if job.prepare is not None:
                a = job.prepare(engine, job.cancel_event)
                job.meta["context_truncated"] = a.truncated
                notice = a.notice
                gen = engine.chat(a.messages, a.images or None, cancel=job.cancel_event,
                                  truncate=job.truncate, **job.sampling)
            else:
                notice = None
                gen = engine.complete(job.prompt or "", cancel=job.cancel_event,
                                      truncate=job.truncate, **job.sampling)
            emit(Started(engine.info.label, notice))
            seen = 0
            for delta in gen:
                lps = gen.token_logprobs  # entries arrive before their token's text
                emit(Delta(delta, tuple(lps[seen:]) or None))
                seen = len(lps)
            usage = gen.usage
            if job.cancel_event.is_set():
                usage.finish_reason = "cancelled"
            job.text = gen.text
            self.generated_tokens += usage.completion_tokens
            post(self._finish, job, Done(usage))
        except BaseException as e:  # every failure becomes an error frame
            if job.cancel_event.is_set():  # stopped (e.g. while the prompt was assembled)
                post(self._finish, job, Done(_cancelled_usage()))
                return
            if status_for(e) >= 500:
                log.exception("generation %s failed", job.id)
            post(self._finish, job, Failed(status_for(e), message_for(e), code_for(e)))
        finally:
            if gen is not None:
                try:
                    gen.close()
                except Exception:  # closing a finished generator may raise; nothing to do
                    pass


def _size(path: Path | None) -> int:
    """Bytes of a model file or folder (for the progress estimate); 0 when unknown."""
    try:
        if path is None:
            return 0
        return path.stat().st_size if path.is_file() else sum(
            p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return 0


def _cancelled_usage() -> minicpm.Usage:
    u = minicpm.Usage()
    u.finish_reason = "cancelled"
    return u

