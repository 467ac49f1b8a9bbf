"""The wire between an engine client and its worker process: pickled tuples on a socket.

Both ends are this package, started from the same interpreter and code, so pickle is the
format (it carries ``EngineInfo``, ``SamplingParams``, PIL images and numbers as they are).
Every message is ``(kind, rid, body)``; ``rid`` ties replies to their request so that small
calls (``count_tokens``) and cancels travel while a generation streams.

client → worker: ``load`` {model, backend, options} · ``chat`` {messages, images, truncate,
options} · ``complete`` {prompt, truncate, options} · ``prefill`` {prompt, chunk_tokens, continues} (a pre-read; answered by one
``result``, cancelled like a generation) · ``call`` (method, args) · ``cancel`` ·
``close``.
worker → client: ``loaded`` {info, defaults, can_tokenize, fim} · ``delta`` (text, logprobs)
· ``done`` (usage dict, logprobs) · ``result`` value · ``error`` (see ``encode_error``).
"""

from __future__ import annotations

import socket
import threading
from multiprocessing.connection import Connection
from typing import Any

from .. import errors

# Test-only: when set in the worker's environment, a load whose model path, or a chat or
# completion whose text, contains this marker makes the worker call os.abort() (before
# loading; after the first delta) as a GGML_ASSERT would. Tests set it; nothing else does.
ABORT_MARKER_ENV = "MINICPM_WORKER_TEST_ABORT"

# Methods a client may call by name (anything else is refused by the worker).
CALLS = ("render", "count_tokens", "stats", "fim_tokens")


class Channel:
    """A message pipe over one end of a socketpair; ``send`` may be called from any thread."""

    def __init__(self, sock: socket.socket):
        self._sock = sock  # keeps the socket object alive; Connection owns a dup of its fd
        self._conn = Connection(sock.detach())
        self._lock = threading.Lock()

    def send(self, msg: tuple[str, int, Any]) -> None:
        with self._lock:
            self._conn.send(msg)

    def recv(self) -> tuple[str, int, Any]:
        """The next message; EOFError or OSError when the other side is gone."""
        return self._conn.recv()

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass


def encode_error(exc: BaseException) -> dict[str, Any]:
    """An exception as plain data: its type (when it is one callers branch on), its text and
    simple attributes (``ModelFileError.path``, ``ContextOverflowError.prompt_tokens``…)."""
    attrs = {k: v for k, v in vars(exc).items()
             if isinstance(v, (str, int, float, bool, type(None)))}
    # the class and its bases, so a subclass the other side does not know keeps its meaning
    bases = [c.__name__ for c in type(exc).__mro__ if issubclass(c, BaseException)]
    return {"type": type(exc).__name__, "bases": bases, "message": str(exc), "attrs": attrs}


def _known_types() -> dict[str, type[BaseException]]:
    known: dict[str, type[BaseException]] = {
        name: obj for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException)}
    known.update(ValueError=ValueError, TypeError=TypeError,
                 NotImplementedError=NotImplementedError)
    try:
        from ..prompts import AssemblyCancelled

        known["AssemblyCancelled"] = AssemblyCancelled
    except ImportError:  # pragma: no cover
        pass
    return known


def decode_error(data: dict[str, Any]) -> BaseException:
    """The same exception type when it is one of ours (or ValueError/TypeError), so callers'
    ``except`` clauses and the server's status codes work unchanged; RuntimeError otherwise."""
    known = _known_types()
    cls = next((known[n] for n in [data.get("type", ""), *data.get("bases", ())]
                if n in known), None)
    message = str(data.get("message", ""))
    if cls is None:
        return RuntimeError(f"{data.get('type')} in the engine process: {message}")
    exc = cls.__new__(cls)
    BaseException.__init__(exc, message)
    for k, v in (data.get("attrs") or {}).items():
        try:
            setattr(exc, k, v)
        except AttributeError:
            pass
    return exc
