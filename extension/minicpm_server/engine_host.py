"""One shared engine for the whole server: background loading, a fair FIFO queue, cancel,
and supervision of the engine's worker process.

The model lives in a worker process (``minicpm.worker``): a native fault or an OOM kill ends
that process, not the server. Its death ends every running and queued job at once with the
reason; the next request restarts it (with backoff; after repeated crashes it stays stopped),
and a model that killed it while loading is not loaded again at start-up (``supervisor.py``).

Everything here except the thread functions runs on the server's event loop thread, so the
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
from pathlib import Path
from typing import Any

import minicpm
from minicpm.catalogue import STANDIN_HINT, resolve
from minicpm.errors import EngineCrashedError
from minicpm.worker import load_engine

from .config import MiniCPM
from .errors import RequestError, message_for, status_for
from .events import Done, Failed, Queued
from .jobs import Job, RawPrompt, cancelled_usage, raw_prompt, run_job
from .preread import Prereads
from .supervisor import CrashPolicy

__all__ = ["EngineHost", "Job", "RawPrompt", "raw_prompt"]

log = logging.getLogger("minicpm_server")
_UNRESOLVED = object()

# Assumed read rate for the loading-progress estimate (llama.cpp mmaps; torch reads).
_LOAD_BYTES_PER_S = 400e6


class EngineHost:
    def __init__(self, config: MiniCPM, loader: Callable[..., Any] = load_engine):
        self.config = config
        self._loader = loader
        self.engine: Any = None  # minicpm.Engine or minicpm.worker.WorkerEngine
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
        self.crashes = CrashPolicy(config.bad_models_file or None)
        self.restartable = False  # the engine died and the next request may restart it
        self._last_load: tuple[str | None, str | None, str | None] | None = None
        self.prereads = Prereads(self)  # lowest priority: runs only when nothing else does

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def resolve_model_path(self, model: str | None, backend: str | None = None) -> Path | None:
        """Resolve a model name (file-system walks: call it off the event loop) so that an
        unknown one is a 404 at once and not a background failure. Returns the file or
        folder, None for remote."""
        backend = backend or self.config.backend
        if backend == "remote" or self.config.remote_base_url:
            return None
        return resolve(model or None, model_dirs=self.config.model_dirs or None).path

    def start_load(self, model: str | None = None, backend: str | None = None,
                   device: str | None = None, path: Any = _UNRESOLVED,
                   chosen: bool = False, delay: float = 0.0) -> None:
        """Load in a background thread; the current engine keeps serving until the new one is
        ready (then it is swapped in, and the old one closed once its generations end).
        ``path``: what ``resolve_model_path`` gave; without it the name is resolved in that thread
        (a bad name then shows as the ``error`` state). ``chosen``: the user picked this model
        (load it even if it crashed the engine before); otherwise (start-up, first use, a
        restart) a model remembered as bad is refused. ``delay``: restart backoff."""
        model = model if model is not None else (self.config.model or None)
        backend = backend or self.config.backend
        opts = self.config.load_options()
        if device:
            opts["device"] = device
        if backend == "remote" and "base_url" not in opts:
            raise RequestError(400, "backend 'remote' needs c.MiniCPM.remote_base_url")
        if chosen:
            self.crashes.reset()
        self._load_seq += 1
        seq = self._load_seq
        self.state, self.error, self.error_status = "loading", None, None
        self.restartable = False
        self.target = model or (path.name if isinstance(path, Path) else "default")
        self._load_started = time.monotonic()
        self._load_expected_s = 0.5 + delay
        self._last_load = (model, backend, device)
        loop = self.loop
        key = model or "default"

        def on_exit(err: EngineCrashedError, holder: list[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._engine_died, holder[0] if holder else None, err)
            except RuntimeError:  # the server is stopping
                pass

        def work() -> None:
            nonlocal key
            holder: list[Any] = []
            try:
                found = self.resolve_model_path(model, backend) if path is _UNRESOLVED else path
                key = str(found) if found is not None else key
                if chosen:
                    self.crashes.forget(key)
                elif (bad := self.crashes.bad(key)) is not None:
                    raise RequestError(503, f"{key} crashed the engine while loading "
                                            f"({bad.get('when')}: {bad.get('reason')}); it is "
                                            "not loaded again until you choose it again")
                self._load_expected_s = 0.5 + delay + _size(found) / _LOAD_BYTES_PER_S
                if delay:
                    time.sleep(delay)
                kw: dict[str, Any] = dict(opts)
                if self._loader is load_engine:
                    kw.update(on_exit=lambda e: on_exit(e, holder),
                              in_process=not self.config.engine_process)
                engine = self._loader(model, backend=backend, **kw)
                holder.append(engine)
            except BaseException as e:  # report every failure, never kill the server
                if isinstance(e, EngineCrashedError) and e.during == "loading":
                    self.crashes.mark_bad(key, str(e))
                if isinstance(e, (minicpm.MiniCPMError, ValueError, RequestError)):
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

    def _load_done(self, seq: int, engine: Any, err: BaseException | None) -> None:
        if seq != self._load_seq:  # superseded by a later load or an unload
            if engine is not None:
                self._close_later(engine)
            return
        if err is not None:
            self.state, self.error = "error", message_for(err)
            self.error_status = 503 if status_for(err) >= 500 else status_for(err)
            self._fail_waiting(f"model failed to load: {self.error}")
            return
        old, self.engine = self.engine, engine
        self.state = "ready"
        assert engine is not None
        log.info("MiniCPM ready: %r", engine)
        if old is not None:
            self._close_later(old)
        self._pump()

    def _engine_died(self, engine: Any, err: EngineCrashedError) -> None:
        """The worker process died (called on the loop): running jobs have already got the
        error from their generations; queued ones get it now."""
        if engine is None or engine is not self.engine:
            return  # an engine already replaced or unloaded
        self.engine = None
        self.crashes.record()
        self.state, self.error_status = "error", 503
        self.restartable = self.crashes.may_restart()
        n = self.crashes.recent()
        if self.restartable:
            self.error = f"{err} It restarts at the next request."
        else:
            self.error = (f"{err} The engine crashed {n} times in a few minutes, so it is not "
                          "restarted: choose a model (sidebar or %minicpm use) to try again.")
        self._fail_waiting(self.error)

    def _fail_waiting(self, message: str) -> None:
        for job in list(self.waiting):
            self._finish(job, Failed(self.error_status or 503, message))
        self.waiting.clear()

    def ensure_loading(self) -> None:
        """At first use load the default model; after a crash, restart the engine (backoff)."""
        if self.state == "idle":
            self.start_load()
        elif self.state == "error" and self.restartable and self._last_load is not None:
            model, backend, device = self._last_load
            self.start_load(model, backend, device, delay=self.crashes.backoff())

    def unload(self) -> None:
        self._load_seq += 1  # a load in flight is discarded when it lands
        old, self.engine = self.engine, None
        self.state, self.error, self.error_status, self.target = "idle", None, None, None
        self.restartable = False
        if old is not None:
            self._close_later(old)

    def _close_later(self, engine: Any) -> None:
        # Engine.close waits for a running generation to end (one token, once cancelled);
        # a worker's close ends its process, so its memory goes back to the system.
        threading.Thread(target=engine.close, name="minicpm-close", daemon=True).start()

    def shutdown(self) -> None:
        self.prereads.shutdown()
        for job in list(self.running) + list(self.waiting):
            job.cancel()
        self.waiting.clear()
        old = self.engine
        self.unload()
        if old is not None and hasattr(old, "pid"):  # do not leave a worker behind
            t = threading.Thread(target=old.close, daemon=True)
            t.start()
            t.join(timeout=5)
            if t.is_alive():
                old.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- status ------------------------------------------------------------------------------
    @property
    def info(self) -> minicpm.EngineInfo | None:
        return self.engine.info if self.engine is not None else None

    @property
    def busy(self) -> bool:
        """A queued or running job (the inline-completion lane yields to them). Read from
        other threads: truth-testing a set or deque is atomic in CPython."""
        return bool(self.running) or bool(self.waiting)

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
            "engine_process": self._process_status(),
            "preread": self.prereads.status(),
            "version": minicpm.__version__,
        }

    def _process_status(self) -> dict[str, Any]:
        pid = getattr(self.engine, "pid", None)
        rss = None
        if pid is not None:
            try:
                import psutil

                rss = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
            except Exception:  # gone between the two lines, or no psutil: no figure
                pass
        return {"pid": pid, "rss_mb": rss, "crashes": self.crashes.total,
                "restarts_at_next_request": self.restartable}

    # --- queue -------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job (FIFO). Its handler reads ``job.events``."""
        if len(self.waiting) >= self.config.max_queue:
            raise RequestError(503, f"the queue is full ({self.config.max_queue} waiting); "
                                    "try again shortly")
        self.ensure_loading()
        if self.state == "error":
            raise RequestError(self.error_status or 503, f"no model loaded: {self.error}")
        self.waiting.append(job)
        self.prereads.preempt()  # a real request stops a pre-read within one chunk
        self._pump()

    def cancel(self, job: Job) -> None:
        job.cancel()
        if job in self.waiting:
            self.waiting.remove(job)
            self._finish(job, Done(cancelled_usage()))
            self._report_positions()

    def _pump(self) -> None:
        while self.state == "ready" and self.waiting and len(self.running) < self.config.concurrency:
            job = self.waiting.popleft()
            if job.cancel_event.is_set():
                self._finish(job, Done(cancelled_usage()))
                continue
            self.running.add(job)
            engine = self.engine
            assert engine is not None
            fut = self.loop.run_in_executor(self._pool, run_job, job, engine, self.loop,
                                            self._finish, self._count_tokens)
            fut.add_done_callback(lambda f, j=job: self._job_ended(j, f))
        self._report_positions()
        self.prereads.maybe_start()  # only when nothing is queued or running

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

    def _count_tokens(self, n: int) -> None:
        self.generated_tokens += n

    def _finish(self, job: Job, event: Done | Failed) -> None:
        if not job.finished:
            job.finished = True
            job.events.put_nowait(event)

def _size(path: Path | None) -> int:
    """Bytes of a model file or folder (for the progress estimate); 0 when unknown."""
    try:
        if path is None:
            return 0
        return path.stat().st_size if path.is_file() else sum(
            p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return 0
