"""jupyter-minicpm's engine library: MiniCPM models on your own machine.

    >>> import minicpm
    >>> engine = minicpm.load()            # best local MiniCPM, or the embedded stand-in
    >>> for delta in engine.chat([{"role": "user", "content": "Hi"}]):
    ...     print(delta, end="")

Nothing here imports Jupyter. ``%load_ext minicpm`` delegates to ``minicpm_magics``.
"""

from .api import Engine, Generation, load
from .backends.base import EngineInfo, Usage
from .errors import (
    BackendUnavailableError,
    ContextOverflowError,
    DownloadError,
    ImageError,
    MiniCPMError,
    ModelFileError,
    ModelNotFoundError,
    OutOfMemoryError,
    UnsupportedModelError,
)
from .sampling import SamplingParams

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError", "ContextOverflowError", "DownloadError", "Engine", "EngineInfo",
    "Generation", "ImageError", "MiniCPMError", "ModelFileError", "ModelNotFoundError",
    "OutOfMemoryError", "SamplingParams", "UnsupportedModelError", "Usage", "load",
]


def load_ipython_extension(ipython):  # pragma: no cover - thin delegation
    from minicpm_magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from minicpm_magics import unload_ipython_extension as _unload

    _unload(ipython)


def __getattr__(name: str):
    # ``minicpm.ChatWidget()`` in a notebook without importing ipywidgets for plain engine use.
    if name == "ChatWidget":
        from minicpm_magics import ChatWidget

        return ChatWidget
    raise AttributeError(f"module 'minicpm' has no attribute {name!r}")
