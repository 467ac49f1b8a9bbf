"""Engine-test fixtures: the stand-in model loaded once per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def standin_options() -> dict[str, Any]:
    """Override in a test module to load the stand-in with other options."""
    return {"n_ctx": 1024}


@pytest.fixture(scope="module")
def standin(standin_options: dict[str, Any]) -> Iterator[Any]:
    """The real stand-in engine (SmolLM2-135M on llama.cpp, 2 threads)."""
    pytest.importorskip("llama_cpp")
    import minicpm

    e = minicpm.load(n_threads=2, **standin_options)
    yield e
    e.close()
