"""Fixtures: a real ipykernel (jupyter_client) with the extension loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from jupyter_client.manager import start_new_kernel
from kernelharness import Kernel


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["MINICPM_TRANSPORT"] = "in-process"  # never pick up a Jupyter server on this machine
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.pop("MINICPM_SERVER_URL", None)
    return env


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    yield from _start("minicpm")


@pytest.fixture(scope="module")
def fresh_kernel_module() -> Iterator[Kernel]:
    """A kernel where no cell has failed yet and no model is loaded."""
    yield from _start("minicpm_magics")


@pytest.fixture()
def fresh_kernel() -> Iterator[Kernel]:
    """A kernel of its own (an interrupt, a notebook)."""
    yield from _start("minicpm_magics")


def _start(extension: str) -> Iterator[Kernel]:
    """A kernel with the magics loaded through ``extension`` (``minicpm`` delegates to
    ``minicpm_magics``; the tests use both names)."""
    km, kc = start_new_kernel(kernel_name="python3", env=_env())
    k = Kernel(km, kc)
    k.ok(f"%load_ext {extension}")
    # small, reproducible answers: the test model's text varies, its structure does not
    k.ok("%config MiniCPMMagics.update_interval = 0.02")
    k.ok("%config MiniCPMMagics.load_options = {\"n_ctx\": 1024, \"n_threads\": 2}")
    try:
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
