"""The client side of an engine worker: ``load(...)`` starts a worker process and returns a
``WorkerEngine``, a stand-in for ``minicpm.Engine`` whose model lives in that process.

One reader thread takes every message off the socket and hands it to the request it answers
(by request id), so a ``count_tokens`` from one thread is answered while another thread's
generation streams. When the process dies, every open request ends at once with an
``EngineCrashedError`` that says how it died (the signal; "likely out of memory" for SIGKILL)
and quotes the last lines it wrote to stderr; ``on_exit`` is then called once.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..api import TRUNCATE_MODES, Generation
from ..backends.base import EngineInfo, Usage
from ..errors import EngineCrashedError
from ..tools import check_tool_choice
from .protocol import Channel, decode_error
from .replies import Replies, extend_logprobs, fill_usage, finish_early, last_words

log = logging.getLogger("minicpm.worker")

CANCEL_POLL_S = 0.01  # how often a waiting generation re-reads its cancel flag
STDERR_TAIL_LINES = 40
_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}
CLOSE_TIMEOUT_S = 30.0
_SIGNAL_WHY = {
    "SIGKILL": "likely out of memory: the system's OOM killer ends processes with SIGKILL",
    "SIGABRT": "a native abort in the model code (llama.cpp assert)",
    "SIGSEGV": "a native crash in the model code",
    "SIGBUS": "a native crash in the model code (a model file changed or truncated on disk?)",
}


class WorkerProcess:
    """The child process, its socket and the threads that read its socket and stderr."""

    def __init__(self, on_exit: Callable[[EngineCrashedError], None] | None = None,
                 log_name: str = "minicpm.worker", env: dict[str, str] | None = None):
        self.on_exit = on_exit
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.closing = False
        self.crash: EngineCrashedError | None = None
        self.phase = "starting"  # starting | loading | running
        self._ids = itertools.count(1)
        self._open: dict[int, queue.SimpleQueue[tuple[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stderr_log = logging.getLogger(log_name)
        parent, child = socket.socketpair()
        src = str(Path(__file__).resolve().parents[2])  # the folder holding `minicpm`
        child_env = dict(os.environ if env is None else env)
        # ggml's abort handler runs gdb for a backtrace (seconds); the assert line is enough.
        child_env.setdefault("GGML_NO_BACKTRACE", "1")
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, child_env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minicpm.worker.process", str(child.fileno())],
            # stdout joins stderr: llama-cpp-python prints some of its load report there.
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=child_env,
            start_new_session=True)  # a Ctrl-C at the server's terminal is the server's
        child.close()
        self.pid = self.proc.pid
        self.chan = Channel(parent)
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True,
                                               name=f"minicpm-worker-stderr-{self.pid}")
        self._stderr_thread.start()
        threading.Thread(target=self._read, daemon=True,
                         name=f"minicpm-worker-reader-{self.pid}").start()

    @property
    def alive(self) -> bool:
        return self.crash is None and self.proc.poll() is None

    # --- requests ----------------------------------------------------------------------------
    def open(self) -> tuple[int, queue.SimpleQueue[tuple[str, Any]]]:
        rid = next(self._ids)
        q: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        with self._lock:
            if self.crash is not None:
                raise self.crash
            self._open[rid] = q
        return rid, q

    def end(self, rid: int) -> None:
        with self._lock:
            self._open.pop(rid, None)

    def send(self, kind: str, rid: int, body: Any = None) -> None:
        try:
            self.chan.send((kind, rid, body))
        except (OSError, ValueError) as e:
            raise self.crash or EngineCrashedError(f"the engine process is gone ({e})") from None

    def request(self, kind: str, body: Any, timeout: float | None = None) -> Any:
        """Send one request and wait for its single reply (``result``/``loaded``)."""
        rid, q = self.open()
        try:
            self.send(kind, rid, body)
            what, value = q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the engine process did not answer {kind!r}") from None
        finally:
            self.end(rid)
        if what == "error":
            raise value if isinstance(value, BaseException) else decode_error(value)
        return value

    # --- reader threads ----------------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                kind, rid, body = self.chan.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                q = self._open.get(rid)
            if q is not None:
                q.put((kind, body))
        self._exited()

    def _read_stderr(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self.tail.append(line)
                # Python's own log lines in the worker keep their level; llama.cpp's chatter
                # (a hundred lines per load) is DEBUG: a crash logs the tail at ERROR.
                level = _LEVELS.get(line.split(" ", 1)[0], logging.DEBUG)
                self._stderr_log.log(level, "[engine %d] %s", self.pid, line)

    def _exited(self) -> None:
        try:
            rc = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # the socket closed but the process lingers
            self.proc.kill()
            rc = self.proc.wait()
        self._stderr_thread.join(timeout=0.5)  # its last words (the assert) come last
        err = self._describe(rc)
        with self._lock:
            self.crash = err
            waiting, self._open = list(self._open.values()), {}
        for q in waiting:
            q.put(("error", err))
        if not self.closing:
            log.error("%s\nThe engine process's last lines:\n%s", err,
                      "\n".join(list(self.tail)[-12:]))
            if self.on_exit is not None:
                self.on_exit(err)

    def _describe(self, rc: int) -> EngineCrashedError:
        during = "loading the model" if self.phase in ("starting", "loading") else "running"
        if self.closing:
            return EngineCrashedError("the engine was closed", None, self.phase)
        sig = None
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = f"signal {-rc}"
            how = f"was killed by {sig}"
            why = _SIGNAL_WHY.get(sig)
            if why:
                how += f" ({why})"
        else:
            how = f"exited with status {rc}"
        # A SIGKILL comes from outside: the worker's last chatter would only mislead.
        words = last_words(list(self.tail), fallback=sig != "SIGKILL")
        last = (" Its last output: " + " | ".join(words)) if words else ""
        return EngineCrashedError(f"the engine process (pid {self.pid}) {how} while "
                                  f"{during}.{last[:800]}", sig,
                                  "loading" if during != "running" else "running")

    # --- ending ------------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Ask the worker to free the model and exit; kill it if it does not within ``timeout``."""
        self.closing = True
        if self.proc.poll() is None:
            try:
                self.chan.send(("close", 0, None))
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.chan.close()

    def kill(self) -> None:
        self.proc.kill()


class WorkerEngine:
    """``minicpm.Engine``'s public surface, served by a worker process (see the module doc)."""

    def __init__(self, proc: WorkerProcess, loaded: dict[str, Any]):
        self._w = proc
        self.info: EngineInfo = loaded["info"]
        self.defaults = loaded["defaults"]
        self.can_tokenize: bool = bool(loaded["can_tokenize"])
        self._fim = loaded["fim"]
        self.pid = proc.pid

    @property
    def alive(self) -> bool:
        return self._w.alive

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._w.tail)

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        return self._w.request("call", ("render", [list(messages)]))

    def count_tokens(self, text: str, add_bos: bool = False) -> int:
        return self._w.request("call", ("count_tokens", [text, add_bos]))

    def fim_tokens(self) -> Any:
        return self._fim

    def stats(self) -> dict[str, Any]:
        if not self._w.alive:
            return {}
        try:
            return self._w.request("call", ("stats", []), timeout=5)
        except Exception:  # status must not fail because the worker is busy or gone
            return {}

    def chat(self, messages: Sequence[dict[str, Any]], images: Sequence[Any] | None = None, *,
             cancel: threading.Event | None = None, truncate: str = "error",
             **options: Any) -> Generation:
        if truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate must be one of {TRUNCATE_MODES}")
        # the tool mode decides whether gen.tool_calls parses the text (as Engine.chat sets it)
        mode, _ = check_tool_choice(options.get("tool_choice"), bool(options.get("tools")))
        body = {"messages": list(messages), "images": list(images or ()),
                "truncate": truncate, "options": options}
        gen = self._generation("chat", body, cancel)
        gen.tool_mode = mode
        return gen

    def complete(self, prompt: str, *, cancel: threading.Event | None = None,
                 truncate: str = "error", **options: Any) -> Generation:
        if not isinstance(prompt, str):
            raise ValueError("prompt must be a string")
        body = {"prompt": prompt, "truncate": truncate, "options": options}
        return self._generation("complete", body, cancel)

    def _generation(self, kind: str, body: dict[str, Any],
                    cancel: threading.Event | None) -> Generation:
        holder: list[Generation] = []
        gen = Generation(lambda ev, usage: self._stream(kind, body, ev, usage, holder), cancel)
        holder.append(gen)
        return gen

    def _stream(self, kind: str, body: dict[str, Any], cancel: threading.Event, usage: Usage,
                holder: list[Generation]) -> Iterator[str]:
        """Runs when the Generation is first iterated (like Engine's, the work starts then)."""
        w = self._w
        rid, q = w.open()
        replies = Replies(w, rid, q, cancel, CANCEL_POLL_S)
        finished = False
        try:
            w.send(kind, rid, body)
            for what, value in replies:
                if what == "delta":
                    text, lps, usage_d = value
                    extend_logprobs(holder, lps)
                    if usage_d:
                        fill_usage(usage, usage_d)
                    yield text
                elif what == "done":
                    finished = True
                    usage_d, lps = value
                    extend_logprobs(holder, lps)
                    fill_usage(usage, usage_d)
                    return
                else:
                    finished = True
                    raise value if isinstance(value, BaseException) else decode_error(value)
        finally:
            if not finished and w.alive:  # closed early: stop the worker's work, and wait
                finish_early(w, rid, q, usage, replies.cancelled)  # for it, as Engine's close does
            w.end(rid)

    def prefill(self, prompt: str | Sequence[dict[str, Any]], *,
                cancel: threading.Event | None = None, chunk_tokens: int = 64,
                continues: bool = True) -> dict[str, Any]:
        """``Engine.prefill`` in the worker; ``cancel`` is forwarded as a chat's is (a chat or
        completion sent meanwhile also stops it there, within one chunk)."""
        w = self._w
        rid, q = w.open()
        try:
            w.send("prefill", rid, {"prompt": prompt if isinstance(prompt, str) else list(prompt),
                                    "chunk_tokens": int(chunk_tokens), "continues": continues})
            what, value = next(iter(Replies(w, rid, q, cancel, CANCEL_POLL_S)))  # its one reply
            if what == "error":
                raise value if isinstance(value, BaseException) else decode_error(value)
            return value
        finally:
            w.end(rid)

    def close(self) -> None:
        self._w.close()

    def kill(self) -> None:
        """Kill the worker process at once (tests, and an unload that must not wait)."""
        self._w.kill()

    def __enter__(self) -> WorkerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return (f"<minicpm.WorkerEngine {i.label} [{i.backend}/{i.device}, {i.quantization}] "
                f"pid {self.pid}>")


def load(model: str | Path | None = None, backend: str = "auto", *,
         on_exit: Callable[[EngineCrashedError], None] | None = None,
         env: dict[str, str] | None = None, **options: Any) -> WorkerEngine:
    """Like ``minicpm.load``, with the model in a new worker process. Blocks until it is
    loaded; a failure (a bad file, not enough memory, the process dying while loading) raises
    and leaves no process behind. ``on_exit(error)`` is called (from a reader thread) if the
    process dies later, after every open request has got that error."""
    started = time.monotonic()
    proc = WorkerProcess(on_exit=None, env=env)
    proc.phase = "loading"
    try:
        loaded = proc.request("load", {"model": str(model) if isinstance(model, Path) else model,
                                       "backend": backend, "options": options})
    except BaseException:
        if proc.alive:
            proc.close(timeout=5)
        raise
    proc.phase = "running"
    proc.on_exit = on_exit
    if not proc.alive and proc.crash is not None:  # died just after answering
        raise proc.crash
    log.info("engine process %d loaded %s in %.1f s", proc.pid, loaded["info"].label,
             time.monotonic() - started)
    return WorkerEngine(proc, loaded)
