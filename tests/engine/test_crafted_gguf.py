"""Crafted GGUF files that reach a llama.cpp assert (an abort of the whole process that loads
them): each is proved to abort a bare llama.cpp in a throwaway process, then refused by
gguf_check with its reason, and through the worker it is a clear error for the caller."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from minicpm import worker
from minicpm.errors import ModelFileError
from minicpm.gguf_check import read_gguf
from minicpm.testing import preset, random_weights, tiny_vocab
from minicpm.testing.gguf_writer import write_gguf

A = "minicpm."
CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    # name: (preset, metadata overrides, what gguf_check says)
    "rope_smaller_than_head": ("dense_tied", {A + "rope.dimension_count": 8}, "rope.dimension_count"),
    "rope_larger_than_head": ("dense_tied", {A + "rope.dimension_count": 32}, "rope.dimension_count"),
    "absurd_block_count": ("dense_tied", {A + "block_count": 100_000}, "block_count"),
    "absurd_expert_count": ("moe", {A + "expert_count": 100_000}, "expert_count"),
    "more_experts_used_than_exist": ("moe", {A + "expert_used_count": 9}, "expert_used_count"),
    "duplicate_token_strings": ("dense_tied", {}, "twice"),
}
# Refused gracefully by llama.cpp already; gguf_check now names the reason.
FRIENDLIER = {
    "kv_heads_do_not_divide": {A + "attention.head_count_kv": 3},
    "heads_do_not_divide_width": {A + "attention.head_count": 3},
    "zero_heads": {A + "attention.head_count": 0},
}


def craft(folder: Path, name: str, base: str, overrides: dict[str, Any]) -> Path:
    cfg = preset(base)
    vocab = tiny_vocab(cfg.vocab_size)
    if name == "duplicate_token_strings":
        vocab.pieces[300] = vocab.pieces[301]
    return write_gguf(cfg, random_weights(cfg, 0), folder / f"{name}.gguf", vocab=vocab,
                      overrides=overrides)


@pytest.mark.parametrize("name", sorted(CASES))
def test_asserting_files_are_refused_before_llama_cpp(tmp_path: Path, name: str) -> None:
    base, overrides, reason = CASES[name]
    path = craft(tmp_path, name, base, overrides)
    bare = subprocess.run(  # the condition is real: a bare llama.cpp aborts on it
        [sys.executable, "-c", "import sys, llama_cpp; "
         "llama_cpp.Llama(sys.argv[1], n_ctx=64, n_threads=1, verbose=False)", str(path)],
        env={"GGML_NO_BACKTRACE": "1", "PATH": "/usr/bin:/bin"}, capture_output=True,
        timeout=120)
    assert bare.returncode == -signal.SIGABRT, bare.stderr[-500:]
    with pytest.raises(ModelFileError, match=reason):
        read_gguf(path)
    with pytest.raises(ModelFileError, match=reason):  # and so, fast, through the worker
        worker.load(str(path), n_ctx=64, n_threads=1)


@pytest.mark.parametrize("name", sorted(FRIENDLIER))
def test_head_counts_that_do_not_divide_are_named(tmp_path: Path, name: str) -> None:
    path = craft(tmp_path, name, "dense_tied", FRIENDLIER[name])
    with pytest.raises(ModelFileError, match="head_count"):
        read_gguf(path)


def test_real_shapes_pass(tiny_gguf: Any) -> None:
    for kind in ("dense_tied", "gqa", "moe"):
        read_gguf(tiny_gguf(kind).path)
