"""Fixtures of the torch engine's tests; the helpers live in torch_testlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from torch_testlib import make_config, random_weights, write_folder  # noqa: E402


@pytest.fixture
def tiny(tmp_path: Path):
    """tiny(name, **cfg) → (folder, cfg, weights)."""
    def make(name: str = "dense", shards: int = 1, dtype: str = "float32",
             tokenizer: str = "json", **kw: Any):
        cfg = make_config(name, **kw)
        wts = random_weights(cfg)
        folder = write_folder(tmp_path / name, cfg, wts, shards, dtype, tokenizer)
        return folder, cfg, wts
    return make
