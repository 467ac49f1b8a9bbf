"""IPython extension for jupyter-minicpm: ``%load_ext minicpm_magics`` (or ``%load_ext minicpm``).

Registers ``%minicpm`` / ``%%minicpm``, an exception hook that keeps recent tracebacks as
``Err[n]``, and a display hook that remembers images for ``%minicpm image``. Answers come from
the Jupyter server's shared engine when the kernel's server runs ``minicpm_server``, otherwise
from an engine loaded in the kernel. ``ChatWidget()`` is an ipywidgets chat. The comm target
``minicpm.variables`` and ``kernel_request`` describe the user's variables to the sidebar.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChatWidget", "MiniCPMMagics", "kernel_request", "load_ipython_extension",
           "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    from .first_cell import rescue_first_cell
    from .magics import MiniCPMMagics
    from .options import keep_question_marks

    if _instance(ipython) is not None:  # %load_ext twice (minicpm and minicpm_magics)
        return
    magics = MiniCPMMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.input_transformer_manager.cleanup_transforms.append(keep_question_marks)
    rescue_first_cell(ipython)  # the rest of this cell was transformed without that rule
    ipython.events.register("post_run_cell", magics.errors.post_run_cell)
    pub = getattr(ipython, "display_pub", None)
    if hasattr(pub, "register_hook"):  # ipykernel only; terminal IPython shows no images
        pub.register_hook(magics.images.hook)
    ipython.push({"Err": magics.errors}, interactive=False)  # hidden from %who
    from .kernel_api import register_comm

    register_comm(ipython)  # the sidebar's view of the variables (kernel_api.py)


def unload_ipython_extension(ipython: Any) -> None:
    magics = _instance(ipython)
    if magics is None:
        return
    ipython.events.unregister("post_run_cell", magics.errors.post_run_cell)
    pub = getattr(ipython, "display_pub", None)
    if hasattr(pub, "unregister_hook"):
        pub.unregister_hook(magics.images.hook)
    ipython.user_ns.pop("Err", None)
    from .kernel_api import unregister_comm

    unregister_comm(ipython)
    from .options import keep_question_marks

    cleanup = ipython.input_transformer_manager.cleanup_transforms
    if keep_question_marks in cleanup:
        cleanup.remove(keep_question_marks)
    ipython.magics_manager.registry.pop("MiniCPMMagics", None)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("minicpm", None)


def kernel_request(request: str) -> Any:
    """Variables for a frontend through a silent execute's ``user_expressions``: see
    kernel_api.py (works even where the extension was not loaded)."""
    from .kernel_api import kernel_request as _request

    return _request(request)


def _instance(ipython: Any) -> Any:
    return ipython.magics_manager.registry.get("MiniCPMMagics")


def __getattr__(name: str) -> Any:
    # lazy: ``import minicpm_magics`` (what %load_ext does) must not import ipywidgets
    if name == "MiniCPMMagics":
        from .magics import MiniCPMMagics

        return MiniCPMMagics
    if name == "ChatWidget":
        from .widget import ChatWidget

        return ChatWidget
    raise AttributeError(f"module 'minicpm_magics' has no attribute {name!r}")
