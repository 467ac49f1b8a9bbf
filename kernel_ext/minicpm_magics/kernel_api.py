"""How a frontend (the sidebar) asks the kernel about its variables without touching the user's
session: no cell runs, so no new globals, ``_``/``Out`` and the execution count stay as they are.

Two entry points, same requests and answers (JSON objects):

1. A comm, target ``minicpm.variables``, registered by ``%load_ext minicpm``. Open it with a
   request as its data (the answer comes back as one comm message), or keep it open and send
   requests as messages. Each answer echoes the request's ``id``.
2. For a kernel where the extension is installed but not loaded: an ``execute_request`` with
   ``code=""``, ``silent=True``, ``store_history=False`` and
   ``user_expressions={"r": "__import__('minicpm_magics').kernel_request('<json>')"}``; the answer
   is ``user_expressions.r.data['application/json']``.

Requests:
- ``{"request": "list"}`` → ``{"variables": [{"name", "type", "summary"}, …]}``
- ``{"request": "describe", "names": [...], "each_tokens": 512, "total_tokens": 2048}`` →
  ``{"descriptions": [{"name", "text", "tokens"}], "missing": [...]}``
- ``{"request": "used", "code": "..."}`` → ``{"names": [...]}``: the user variables the code
  reads (what "Explain cell" and "Fix error" attach automatically).
Anything else, or a failure: ``{"error": "..."}``."""

from __future__ import annotations

import json
from typing import Any

from .cell_names import names_used
from .inspect_vars import is_user_variable, list_variables, variable_context

TARGET = "minicpm.variables"
MAX_TOKENS = 4096  # no request describes more than this


def handle(request: Any, shell: Any) -> dict[str, Any]:
    """Answer one request (see the module doc) from ``shell.user_ns``; never raises."""
    if not isinstance(request, dict):
        return {"error": "a request is a JSON object"}
    rid = request.get("id")
    try:
        out = _answer(request, shell)
    except Exception as e:  # the sidebar shows it; the kernel must not care
        out = {"error": f"{type(e).__name__}: {e}"}
    if rid is not None:
        out["id"] = rid
    return out


def _answer(req: dict[str, Any], shell: Any) -> dict[str, Any]:
    ns = shell.user_ns
    kind = req.get("request")
    if kind == "list":
        return {"variables": list_variables(ns)}
    if kind == "describe":
        names = req.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return {"error": "'names' must be a list of strings"}
        each = _int(req.get("each_tokens"), 512)
        total = _int(req.get("total_tokens"), MAX_TOKENS)
        found, missing = variable_context(names, ns, each_tokens=each, total_tokens=total)
        return {"descriptions": [vars(v) for v in found], "missing": missing}
    if kind == "used":
        code = req.get("code")
        if not isinstance(code, str):
            return {"error": "'code' must be a string"}
        transform = getattr(getattr(shell, "input_transformer_manager", None),
                            "transform_cell", None)
        names = [n for n in names_used(code, transform)
                 if n in ns and is_user_variable(n, ns[n])]
        return {"names": names}
    return {"error": f"unknown request {kind!r}; expected list, describe or used"}


def _int(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, MAX_TOKENS)
    return default


# --- comm ------------------------------------------------------------------------------------------
def register_comm(shell: Any) -> bool:
    """Register the comm target on this kernel; False where there is none (terminal IPython)."""
    manager = _comm_manager(shell)
    if manager is None:
        return False

    def on_open(comm: Any, open_msg: dict[str, Any]) -> None:
        def on_msg(msg: dict[str, Any]) -> None:
            comm.send(handle(msg["content"]["data"], shell))

        comm.on_msg(on_msg)
        data = open_msg["content"].get("data")
        if data:
            comm.send(handle(data, shell))

    manager.register_target(TARGET, on_open)
    return True


def unregister_comm(shell: Any) -> None:
    manager = _comm_manager(shell)
    if manager is not None:
        manager.unregister_target(TARGET, manager.targets.get(TARGET))


def _comm_manager(shell: Any) -> Any:
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    manager = getattr(kernel, "comm_manager", None)
    if manager is None:
        try:  # ipykernel ≥ 6.11 keeps it in the `comm` package
            from comm import get_comm_manager

            manager = get_comm_manager()
        except Exception:
            return None
    return manager


# --- silent execute --------------------------------------------------------------------------------
class JSONResult:
    """Shown by IPython's formatter as ``application/json`` (``user_expressions``)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def _repr_json_(self) -> dict[str, Any]:
        return self.data

    def __repr__(self) -> str:
        return json.dumps(self.data)


def kernel_request(request: str) -> JSONResult:
    """The ``user_expressions`` entry point (module doc, 2)."""
    from IPython import get_ipython

    try:
        parsed = json.loads(request)
    except ValueError as e:
        return JSONResult({"error": f"not JSON: {e}"})
    return JSONResult(handle(parsed, get_ipython()))
