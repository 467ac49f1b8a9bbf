"""Typed errors. Every message is meant for a person: it names the file and the reason."""

from __future__ import annotations

from pathlib import Path


class MiniCPMError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelNotFoundError(MiniCPMError):
    """A catalogue name or path that resolves to nothing on this machine."""


class ModelFileError(MiniCPMError):
    """A model file or folder that exists but cannot be used (truncated, not GGUF, no weights…)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedModelError(ModelFileError):
    """A well-formed file of an architecture or format this backend does not run."""


class ContextOverflowError(MiniCPMError):
    """The prompt (plus room to answer) does not fit the model's context window."""

    def __init__(self, prompt_tokens: int, context_length: int, reserve: int = 0):
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        self.reserve = reserve
        room = (f" with {reserve} token{'s' if reserve > 1 else ''} left to answer"
                if reserve else "")
        super().__init__(
            f"prompt is {prompt_tokens} tokens but the context holds {context_length}{room}; "
            "shorten the prompt, pass truncate='left', or load with a larger n_ctx"
        )


def context_room(prompt_tokens: int, context_length: int, reserve: int = 1) -> int:
    """The one context-length rule: tokens left once the prompt and ``reserve`` (room to
    answer; at least the one token any generation needs) are in the window. Negative: the
    prompt does not fit."""
    return context_length - reserve - prompt_tokens


def fits_context(prompt_tokens: int, context_length: int, reserve: int = 1) -> bool:
    return context_room(prompt_tokens, context_length, reserve) >= 0


def check_context(prompt_tokens: int, context_length: int, reserve: int = 1) -> None:
    """ContextOverflowError unless the prompt plus ``reserve`` fits the window."""
    if not fits_context(prompt_tokens, context_length, reserve):
        raise ContextOverflowError(prompt_tokens, context_length, reserve=reserve)


class OutOfMemoryError(MiniCPMError):
    """The model does not fit: says how much it needs and how much is free."""

    def __init__(self, what: str, needed_bytes: int, free_bytes: int):
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
        super().__init__(
            f"{what} needs {needed_bytes / 2**30:.2f} GiB but only "
            f"{free_bytes / 2**30:.2f} GiB is free"
        )


class ImageError(MiniCPMError):
    """An image that cannot be decoded or used, or images sent to a model that cannot see."""


class DownloadError(MiniCPMError):
    """A download that failed (offline, unknown repository, …)."""


class BackendUnavailableError(MiniCPMError):
    """The requested backend cannot run here (torch not installed, no CUDA, …)."""


class EngineCrashedError(MiniCPMError):
    """The engine's worker process died (a native abort, the OOM killer, a kill): the message
    says how, and ends with the last lines it wrote."""

    def __init__(self, message: str, signal_name: str | None = None, during: str = "running"):
        self.signal_name = signal_name
        self.during = during  # "loading" | "running"
        super().__init__(message)


class SchemaError(MiniCPMError, ValueError):
    """A response_format / tool schema that cannot become a grammar (an HTTP 400)."""
