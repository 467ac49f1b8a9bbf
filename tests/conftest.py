"""Shared fixtures: tiny random MiniCPM models built at test time (see minicpm.testing)."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Triton picks its interpreter when it is first imported, and torch imports triton on its own
# (lazily, e.g. while loading a model) whenever it is installed. Without a GPU, Triton can only
# run through the interpreter: choose it here, before anything imports triton, so that
# tests/torch/test_triton_interpreter.py can run the kernels in any test order.
if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("TRITON_INTERPRET", "1")


@dataclass
class TinyModel:
    """A tiny model's config, its float32 HF-named weights, and the file or folder written."""

    cfg: Any  # minicpm.testing.TinyConfig
    weights: dict[str, np.ndarray]
    path: Path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TinyModel]:
    """``tiny_gguf("gqa", dtype="f32", seed=0, mup_keys=True, **config_changes)`` → TinyModel
    with a GGUF file; the same arguments return the same (cached) file."""
    from minicpm.testing import preset, random_weights
    from minicpm.testing.gguf_writer import write_gguf

    cache: dict[str, TinyModel] = {}

    def make(name: str = "dense_tied", dtype: str = "f32", seed: int = 0,
             mup_keys: Any = True, **changes: Any) -> TinyModel:
        key = repr((name, dtype, seed, mup_keys, sorted(changes.items())))
        if key not in cache:
            cfg = preset(name, **changes)
            weights = random_weights(cfg, seed)
            folder = tmp_path_factory.mktemp(f"gguf-{name}")
            path = write_gguf(cfg, weights, folder / f"tiny-{name}-{dtype}.gguf", dtype=dtype,
                              mup_keys=mup_keys)
            cache[key] = TinyModel(cfg, weights, path)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TinyModel]:
    """``tiny_hf("moe", dtype="float32", shards=1, seed=0, **config_changes)`` → TinyModel with
    a Hugging Face-layout folder (config.json, safetensors, tokenizer.json)."""
    from minicpm.testing import preset, random_weights, write_hf_folder

    cache: dict[str, TinyModel] = {}

    def make(name: str = "dense_tied", dtype: str = "float32", shards: int = 1, seed: int = 0,
             **changes: Any) -> TinyModel:
        key = repr((name, dtype, shards, seed, sorted(changes.items())))
        if key not in cache:
            cfg = preset(name, **changes)
            weights = random_weights(cfg, seed)
            folder = write_hf_folder(cfg, weights, tmp_path_factory.mktemp(f"hf-{name}"),
                                     dtype=dtype, shards=shards)
            cache[key] = TinyModel(cfg, weights, folder)
        return cache[key]

    return make
