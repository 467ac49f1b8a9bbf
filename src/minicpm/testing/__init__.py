"""Test helpers shared by every suite: tiny random MiniCPM models (``tiny``; their tokenizer in
``tiny_tokenizer``, safetensors files by ``safetensors_writer``), GGUF files of them
(``gguf_writer``), a float64 numpy reference forward pass (``reference``), a trained
SentencePiece tokenizer (``spm``) and a CUDA-graph capture checker that runs on CPU
(``capture``; imports torch). The pytest fixtures ``tiny_hf`` / ``tiny_gguf`` in
tests/conftest.py build on them.

Importing this package imports numpy only; gguf, tokenizers, sentencepiece, safetensors and
torch load lazily."""

from .reference import forward, greedy, rel_error
from .tiny import (
    PRESETS,
    PUBLISHED_DIM_MODEL_BASE,
    PUBLISHED_SCALE_DEPTH,
    PUBLISHED_SCALE_EMB,
    TinyConfig,
    preset,
    random_weights,
    to_llama_format,
    write_hf_folder,
)
from .tiny_tokenizer import TinyVocab, hf_tokenizer, tiny_vocab


def write_gguf(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See ``minicpm.testing.gguf_writer.write_gguf`` (imported lazily: it needs gguf)."""
    from .gguf_writer import write_gguf as _write

    return _write(*args, **kwargs)


__all__ = [
    "PRESETS", "PUBLISHED_DIM_MODEL_BASE", "PUBLISHED_SCALE_DEPTH", "PUBLISHED_SCALE_EMB",
    "TinyConfig", "TinyVocab", "forward", "greedy", "hf_tokenizer", "preset", "random_weights",
    "rel_error", "tiny_vocab", "to_llama_format", "write_gguf", "write_hf_folder",
]
