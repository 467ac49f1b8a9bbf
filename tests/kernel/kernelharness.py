"""Driving a real ipykernel through jupyter_client and reading what it published."""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

TIMEOUT = 240  # the CPU is shared: the first answer also loads the model


@dataclass
class Result:
    reply: dict[str, Any]
    msgs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def of(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m["msg_type"] in types]

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of("stream")
                       if m["content"]["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(m["content"]["text"] for m in self.of("stream")
                       if m["content"]["name"] == "stderr")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.of("error")

    def texts(self, mime: str = "text/plain") -> list[str]:
        """Every display payload of this mime, in order (display and updates). Our displays
        are safe ``text/html`` with the Markdown source as the ``text/plain`` twin."""
        return [m["content"]["data"][mime] for m in self.of("display_data", "update_display_data")
                if mime in m["content"]["data"]]

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return self.reply["content"].get("payload", [])


class Kernel:
    def __init__(self, km: Any, kc: Any):
        self.km, self.kc = km, kc

    def run(self, code: str, timeout: float = TIMEOUT, on_msg: Any = None,
            store_history: bool = True, silent: bool = False,
            user_expressions: dict[str, str] | None = None) -> Result:
        msg_id = self.kc.execute(code, store_history=store_history, silent=silent,
                                 user_expressions=user_expressions or {})
        msgs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no idle status for {code!r} in {timeout}s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            msgs.append(msg)
            if on_msg is not None:
                on_msg(msg)
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=timeout)
        return Result(reply, msgs)

    def ok(self, code: str, timeout: float = TIMEOUT, store_history: bool = True) -> Result:
        """Run code that must neither fail nor print a traceback of ours."""
        r = self.run(code, timeout, store_history=store_history)
        assert r.status == "ok", (code, r.reply["content"])
        assert not r.errors, r.errors
        assert "Traceback" not in r.stderr, r.stderr
        return r

    def expressions(self, exprs: dict[str, str]) -> dict[str, Any]:
        """Evaluate ``exprs`` the way a frontend peeks: a silent execute of no code; returns
        the user_expressions results (each ``{'status', 'data', ...}``)."""
        r = self.run("", silent=True, store_history=False, user_expressions=exprs)
        assert r.status == "ok", r.reply["content"]
        return r.reply["content"]["user_expressions"]


MAGICS = "get_ipython().magics_manager.registry['MiniCPMMagics']"


def last_prompt(k: Kernel) -> dict[str, Any]:
    """What the magics sent last (``MiniCPMMagics.last_prompt``), image data left out."""
    r = k.ok(f"import json as _j; _p = {MAGICS}.last_prompt\n"
             "print(_j.dumps({'messages': _p.messages, 'context': [{kk: v for kk, v in c.items() "
             "if kk != 'data'} | {'has_data': 'data' in c} for c in _p.context], "
             "'sampling': _p.sampling, 'model': _p.model}))", store_history=False)
    return json.loads(r.stdout)


def kernel_env(**extra: str) -> dict[str, str]:
    """The test kernels' environment: the in-process engine (never a Jupyter server that
    happens to run on this machine), inline figures, plus ``extra``."""
    env = dict(os.environ)
    env["MINICPM_TRANSPORT"] = "in-process"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.pop("MINICPM_SERVER_URL", None)
    env.update(extra)
    return env


def run_kernel(env: dict[str, str], *setup: str) -> Iterator[Kernel]:
    """A real ipykernel with ``setup`` lines run first; shut down when the caller is done
    (a generator for pytest fixtures: ``yield from run_kernel(...)``)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=env)
    k = Kernel(km, kc)
    try:
        for line in setup:
            k.ok(line)
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


running_kernel = contextmanager(run_kernel)  # the same, as ``with running_kernel(...) as k``
