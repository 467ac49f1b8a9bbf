"""Engine exceptions → HTTP status codes, in one place for REST, WebSocket and OpenAI routes."""

from __future__ import annotations

import json
from typing import Any

from minicpm import errors as engine


class RequestError(Exception):
    """A client mistake found by the server itself (bad frame, unknown chat id…)."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


def status_for(exc: BaseException) -> int:
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, engine.ModelNotFoundError):
        return 404
    if isinstance(exc, (ValueError, TypeError, engine.ContextOverflowError, engine.ImageError,
                        engine.ModelFileError)):
        return 400
    if isinstance(exc, (engine.BackendUnavailableError, engine.OutOfMemoryError,
                        engine.EngineCrashedError)):
        return 503
    return 500


def code_for(exc: BaseException) -> str | None:
    """OpenAI's machine-readable code for the errors clients act on."""
    if isinstance(exc, engine.ContextOverflowError):
        return "context_length_exceeded"
    return getattr(exc, "code", None) if isinstance(exc, RequestError) else None


def message_for(exc: BaseException) -> str:
    """What the client is told. Client mistakes and the engine's own errors are written for a
    person; anything else is a bug whose text may hold paths or internals: the client gets
    its type only, the server log has the traceback."""
    text = str(exc) or type(exc).__name__
    if status_for(exc) < 500 or isinstance(exc, (RequestError, engine.MiniCPMError)):
        return text
    return f"internal error ({type(exc).__name__}); the details are in the server's log"


def parse_json(raw: bytes | str) -> Any:
    """JSON as clients may send it, minus what Python's parser accepts beyond the standard
    (NaN, Infinity) and what would blow its stack (deep nesting): both are 400s."""

    def no_constant(name: str) -> Any:
        raise RequestError(400, f"malformed JSON: {name} is not a JSON number")

    try:
        return json.loads(raw, parse_constant=no_constant)
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, bad UTF-8
        raise RequestError(400, f"malformed JSON: {e}") from e
