"""The engine worker process: ``python -m minicpm.worker.process FD``.

It loads one model with ``minicpm.load`` and serves the messages of ``protocol.py`` on the
socket ``FD`` until told to close or until the socket closes (its parent is gone). The model's
native code runs only here: a ``GGML_ASSERT``, a segfault or the OOM killer ends this
process, never the Jupyter server or a kernel. Its stderr (llama.cpp's own log included) is
read by the parent line by line.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from dataclasses import asdict
from typing import Any

from .protocol import ABORT_MARKER_ENV, CALLS, Channel, encode_error

log = logging.getLogger("minicpm.worker")

# How eagerly the kernel's OOM killer picks this process (-1000..1000; 0 is the default).
# Raising it needs no privilege: under memory pressure the model goes before the server and
# the kernels, which hold the user's work.
OOM_SCORE_ADJ = 900


def set_oom_score_adj(value: int = OOM_SCORE_ADJ) -> bool:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
        return True
    except OSError:  # not Linux, or a sandbox that forbids it: nothing to do
        return False


class Worker:
    def __init__(self, chan: Channel):
        self.chan = chan
        self.engine: Any = None
        self.cancels: dict[int, threading.Event] = {}
        self.abort_marker = os.environ.get(ABORT_MARKER_ENV) or None

    def reply(self, kind: str, rid: int, body: Any) -> None:
        try:
            self.chan.send((kind, rid, body))
        except (OSError, ValueError):  # the parent is gone
            os._exit(0)

    # --- messages ------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            try:
                kind, rid, body = self.chan.recv()
            except (EOFError, OSError):  # the parent closed the socket or died: stop at once
                os._exit(0)
            if kind == "load":
                self.load(rid, body)
            elif kind in ("chat", "complete"):
                ev = self.cancels[rid] = threading.Event()
                threading.Thread(target=self.generate, args=(kind, rid, body, ev),
                                 name=f"minicpm-gen-{rid}", daemon=True).start()
            elif kind == "prefill":
                ev = self.cancels[rid] = threading.Event()
                threading.Thread(target=self.prefill, args=(rid, body, ev),
                                 name=f"minicpm-prefill-{rid}", daemon=True).start()
            elif kind == "cancel":
                ev = self.cancels.get(rid)
                if ev is not None:
                    ev.set()
            elif kind == "call":
                self.call(rid, *body)
            elif kind == "close":
                self.close()
            else:
                self.reply("error", rid, {"type": "ValueError",
                                          "message": f"unknown message {kind!r}"})

    def load(self, rid: int, body: dict[str, Any]) -> None:
        import minicpm

        from ..memory import check_fits

        try:
            options = dict(body.get("options") or {})
            # llama-cpp-python sends llama.cpp's log to /dev/null while loading unless verbose:
            # here it goes to our stderr, which the parent logs, so a fatal assert is visible.
            options.setdefault("verbose", True)
            if self.abort_marker is not None and self.abort_marker in repr(body):
                os.abort()  # test-only: a native abort while loading
            check_fits(body.get("model"), body.get("backend", "auto"), options)
            self.engine = minicpm.load(body.get("model"), backend=body.get("backend", "auto"),
                                       **options)
            e = self.engine
            self.reply("loaded", rid, {"info": e.info, "defaults": e.defaults,
                                       "can_tokenize": e.can_tokenize, "fim": e.fim_tokens(),
                                       "pid": os.getpid()})
        except BaseException as exc:  # every failure goes back as an error
            log.debug("load failed", exc_info=True)
            self.reply("error", rid, encode_error(exc))

    def call(self, rid: int, method: str, args: list[Any]) -> None:
        try:
            if method not in CALLS or self.engine is None:
                raise ValueError(f"no such call {method!r} (or no model loaded)")
            self.reply("result", rid, getattr(self.engine, method)(*args))
        except Exception as exc:
            self.reply("error", rid, encode_error(exc))

    def prefill(self, rid: int, body: dict[str, Any], cancel: threading.Event) -> None:
        try:
            if self.engine is None:
                raise ValueError("no model loaded")
            self.reply("result", rid, self.engine.prefill(
                body["prompt"], cancel=cancel, chunk_tokens=body.get("chunk_tokens", 64),
                continues=body.get("continues", True)))
        except BaseException as exc:
            self.reply("error", rid, encode_error(exc))
        finally:
            self.cancels.pop(rid, None)

    def generate(self, kind: str, rid: int, body: dict[str, Any], cancel: threading.Event) -> None:
        gen = None
        sent = 0  # token_logprobs entries already sent
        try:
            if self.engine is None:
                raise ValueError("no model loaded")
            opts = body.get("options") or {}
            if kind == "chat":
                gen = self.engine.chat(body["messages"], body.get("images") or None,
                                       cancel=cancel, truncate=body.get("truncate", "error"),
                                       **opts)
            else:
                gen = self.engine.complete(body["prompt"], cancel=cancel,
                                           truncate=body.get("truncate", "error"), **opts)
            abort = self.abort_marker is not None and self.abort_marker in repr(body)
            first = True
            for delta in gen:
                lps = getattr(gen, "token_logprobs", None) or []
                new, sent = lps[sent:] or None, len(lps)
                # The first delta carries the usage so far (prompt tokens, time to first
                # token), as an in-process Generation has it filled by then.
                self.reply("delta", rid, (delta, new, asdict(gen.usage) if first else None))
                first = False
                if abort:  # test-only: a native abort in the middle of an answer
                    os.abort()
            lps = getattr(gen, "token_logprobs", None) or []
            self.reply("done", rid, (asdict(gen.usage), lps[sent:] or None))
        except BaseException as exc:
            self.reply("error", rid, encode_error(exc))
        finally:
            self.cancels.pop(rid, None)
            if gen is not None:
                gen.close()  # never raises

    def close(self) -> None:
        """Free the model (after a running generation ends: Engine.close takes its lock)."""
        for ev in list(self.cancels.values()):
            ev.set()
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:
                log.exception("closing the engine failed")
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd = int(args[0])
    set_oom_score_adj()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=fd)
    Worker(Channel(sock)).serve()


if __name__ == "__main__":
    main()
