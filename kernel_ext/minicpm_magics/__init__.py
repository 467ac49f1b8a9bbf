"""IPython extension for jupyter-minicpm: ``%load_ext minicpm_magics`` (or ``%load_ext minicpm``).

Registers ``%minicpm`` / ``%%minicpm``, an exception hook that keeps recent tracebacks as
``Err[n]``, and a display hook that remembers images for ``%minicpm image``. Answers come from
the Jupyter server's shared engine when the kernel's server runs ``minicpm_server``, otherwise
from an engine loaded in the kernel. ``ChatWidget()`` is an ipywidgets chat.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChatWidget", "MiniCPMMagics", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    from .magics import MiniCPMMagics
    from .options import keep_question_marks

    if _instance(ipython) is not None:  # %load_ext twice (minicpm and minicpm_magics)
        return
    magics = MiniCPMMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.input_transformer_manager.cleanup_transforms.append(keep_question_marks)
    ipython.events.register("post_run_cell", magics.errors.post_run_cell)
    pub = getattr(ipython, "display_pub", None)
    if hasattr(pub, "register_hook"):  # ipykernel only; terminal IPython shows no images
        pub.register_hook(magics.images.hook)
    ipython.push({"Err": magics.errors}, interactive=False)  # hidden from %who
    _expose_widget()


def unload_ipython_extension(ipython: Any) -> None:
    magics = _instance(ipython)
    if magics is None:
        return
    ipython.events.unregister("post_run_cell", magics.errors.post_run_cell)
    pub = getattr(ipython, "display_pub", None)
    if hasattr(pub, "unregister_hook"):
        pub.unregister_hook(magics.images.hook)
    ipython.user_ns.pop("Err", None)
    from .options import keep_question_marks

    cleanup = ipython.input_transformer_manager.cleanup_transforms
    if keep_question_marks in cleanup:
        cleanup.remove(keep_question_marks)
    ipython.magics_manager.registry.pop("MiniCPMMagics", None)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("minicpm", None)


def _instance(ipython: Any) -> Any:
    return ipython.magics_manager.registry.get("MiniCPMMagics")


def _expose_widget() -> None:
    """``minicpm.ChatWidget`` without the engine package importing Jupyter: set on load."""
    import minicpm

    if not hasattr(minicpm, "ChatWidget"):
        minicpm.ChatWidget = ChatWidget  # type: ignore[attr-defined]


def ChatWidget(**kwargs: Any) -> Any:  # noqa: N802 - a class-like factory, imported lazily
    """An ipywidgets chat using this kernel's %minicpm transport and memory."""
    from .widget import ChatWidget as _ChatWidget

    return _ChatWidget(**kwargs)


def __getattr__(name: str) -> Any:
    if name == "MiniCPMMagics":
        from .magics import MiniCPMMagics

        return MiniCPMMagics
    raise AttributeError(name)
