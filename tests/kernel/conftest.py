"""Fixtures: a real ipykernel (jupyter_client) with the extension loaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernelharness import Kernel, kernel_env, run_kernel


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
    yield from run_kernel(
        kernel_env(), f"%load_ext {extension}",
        # small, reproducible answers: the test model's text varies, its structure does not
        "%config MiniCPMMagics.update_interval = 0.02",
        "%config MiniCPMMagics.load_options = {\"n_ctx\": 1024, \"n_threads\": 2}")
