"""jupyter-minicpm's engine library: MiniCPM models on your own machine.

    >>> import minicpm
    >>> engine = minicpm.load()            # best local MiniCPM, or the embedded stand-in
    >>> for delta in engine.chat([{"role": "user", "content": "Hi"}]):
    ...     print(delta, end="")

Nothing here imports Jupyter. ``%load_ext minicpm`` delegates to ``minicpm_magics`` lazily.
"""

from .api import Engine, Generation, load
from .backends.base import EngineInfo, Usage
from .errors import (
    BackendUnavailableError,
    ContextOverflowError,
    DownloadError,
    EngineCrashedError,
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
    "BackendUnavailableError", "ContextOverflowError", "DownloadError", "Engine", "EngineCrashedError",
    "EngineInfo",
    "Generation", "ImageError", "MiniCPMError", "ModelFileError", "ModelNotFoundError",
    "OutOfMemoryError", "SamplingParams", "UnsupportedModelError", "Usage", "load",
]


# ``%load_ext minicpm``: a lazy shim. The kernel package is imported only when IPython loads the
# extension, so ``import minicpm`` never pulls in IPython, ipywidgets or the server (the engine
# sits below both; see tests/kernel/test_layering.py). The chat widget is
# ``minicpm_magics.ChatWidget``.
def load_ipython_extension(ipython):  # pragma: no cover - thin delegation
    import importlib

    importlib.import_module("minicpm_magics").load_ipython_extension(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    import importlib

    importlib.import_module("minicpm_magics").unload_ipython_extension(ipython)
