"""The engine in its own process: ``minicpm.worker.load`` starts a worker process that loads
the model, and returns a ``WorkerEngine`` with ``minicpm.Engine``'s public surface.

A native fault in the model (a llama.cpp assert), an out-of-memory kill or a crafted file
then ends the worker, never the process that uses it (the Jupyter server, a kernel): its
requests get an ``EngineCrashedError`` that says why. No Jupyter imports here: the server
extension and the magics' in-kernel fallback start and talk to it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import EngineCrashedError
from .client import WorkerEngine, load


def load_engine(model: str | None = None, backend: str = "auto", *,
                on_exit: Callable[[EngineCrashedError], None] | None = None,
                in_process: bool = False, **options: Any) -> Any:
    """The model in a worker process; a remote backend's client (no native code, no model
    memory) or ``in_process=True`` in this process (``minicpm.load``)."""
    if in_process or backend == "remote" or options.get("base_url"):
        from ..api import load as load_here

        return load_here(model, backend=backend, **options)
    return load(model, backend=backend, on_exit=on_exit, **options)


__all__ = ["WorkerEngine", "load", "load_engine"]
