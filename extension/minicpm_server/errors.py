"""Engine exceptions → HTTP status codes, in one place for REST, WebSocket and OpenAI routes."""

from __future__ import annotations

from minicpm.errors import (
    BackendUnavailableError,
    ContextOverflowError,
    ImageError,
    ModelFileError,
    ModelNotFoundError,
    OutOfMemoryError,
)


class RequestError(Exception):
    """A client mistake found by the server itself (bad frame, unknown chat id…)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status_for(exc: BaseException) -> int:
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, (ValueError, TypeError, ContextOverflowError, ImageError, ModelFileError)):
        return 400
    if isinstance(exc, (BackendUnavailableError, OutOfMemoryError)):
        return 503
    return 500


def message_for(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if status_for(exc) < 500 or isinstance(exc, RequestError) else \
        f"{type(exc).__name__}: {text}"
