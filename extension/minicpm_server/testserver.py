"""A `jupyter server` process with this extension, for the tests and benchmarks that need a real
server on another event loop than their own (the synchronous openai client, a notebook run by
nbclient, load and flood benchmarks). The extension itself never imports this module."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A started server: ``url`` (no trailing slash), ``token``, ``proc``. A context manager
    that stops it on exit."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, token: str):
        self.proc, self.url, self.token = proc, url, token

    def status(self) -> dict[str, Any]:
        req = urllib.request.Request(self.url + "/minicpm/status",
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return dict(json.loads(r.read()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(*options: str, token: str, root: Path | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None, log: Path | None = None,
                 wait_for: str = "ready", timeout: float = 180.0) -> ServerProcess:
    """Start ``python -m jupyter_server`` on a free loopback port with ``token`` and the
    command-line settings ``options`` (``--MiniCPM.model=…``); return once it answers
    ``/minicpm/status`` (``wait_for="up"``) or its model is loaded (``"ready"``; the
    ``error`` state fails at once). ``root``: the server's root folder; ``cwd``, ``env``: the
    process's; ``log``: where its output goes (else nowhere), quoted in the error if it never
    gets there."""
    port = free_port()
    cmd = [sys.executable, "-m", "jupyter_server", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
           "--ServerApp.open_browser=False"]
    if root is not None:
        cmd.append(f"--ServerApp.root_dir={root}")
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the child writes it
    try:
        proc = subprocess.Popen([*cmd, *options], stdout=out, stderr=subprocess.STDOUT,
                                env=env if env is not None else dict(os.environ), cwd=cwd)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]  # the child holds its own descriptor
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", token)
    deadline, why = time.monotonic() + timeout, "it did not answer"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = server.status()["state"]
        except OSError:
            state = None
        if state is not None and (wait_for == "up" or state == "ready"):
            return server
        if state == "error":
            why = "its model failed to load"
            break
        time.sleep(0.2)
    else:
        why = f"it exited ({proc.returncode})" if proc.poll() is not None else why
    server.stop()
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"jupyter server with minicpm_server did not become {wait_for}: {why}"
                       + (f"\n{tail}" if tail else ""))
