"""Will a GGUF model fit in memory? An estimate from its header, checked before loading.

Loading a model that does not fit ends badly: llama.cpp aborts (``ggml_aligned_malloc:
insufficient memory``) or the OOM killer steps in. The estimate is the weights (the tensor
bytes in the file) plus the KV cache at the chosen context and KV type, plus a margin for
compute buffers; "available" is the kernel's MemAvailable (free + reclaimable page cache).
Torch models have their own check (``minicpm.torch.loader.check_memory``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import OutOfMemoryError

# Compute buffers, logits and the allocator: measured 60-120 MB on the stand-in and
# MiniCPM-2B at n_batch 512; 10% plus a floor covers both.
MARGIN_FRACTION = 0.10
MARGIN_BYTES = 128 * 2**20


def available_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def gguf_bytes_needed(path: str | Path, n_ctx: int | None = None, kv_type: str = "auto",
                      low_memory: bool = False) -> tuple[int, int]:
    """(bytes needed, context used) for a GGUF file loaded by the llama.cpp backend."""
    from .backends.llamacpp import (
        DEFAULT_N_CTX,
        KV_BYTES_PER_ELEM,
        LOW_MEMORY,
        LlamaCppBackend,
        split_kv_type,
    )
    from .gguf_check import read_gguf

    summary = read_gguf(path)
    ctx = int(n_ctx or min(summary.context_length, DEFAULT_N_CTX))
    if kv_type == "auto" and low_memory:
        kv_type = str(LOW_MEMORY["kv_type"])
    try:
        kv = LlamaCppBackend._choose_kv_type(kv_type, ctx, summary)
        k, v = split_kv_type(kv)
        per_elem = (KV_BYTES_PER_ELEM[k] + KV_BYTES_PER_ELEM[v]) / 2
        kv_bytes = LlamaCppBackend.kv_elements_per_token(summary) * ctx * per_elem
    except (TypeError, ValueError, ZeroDivisionError):  # odd shapes: gguf_check's job
        kv_bytes = 0
    weights = sum(_tensor_bytes(shape, t) for shape, t in summary.tensors.values())
    need = weights + kv_bytes
    return int(need * (1 + MARGIN_FRACTION) + MARGIN_BYTES), ctx


def _tensor_bytes(shape: tuple[int, ...], ggml_type: int) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    return math.prod(shape) // block * size


def check_fits(model: Any, backend: str = "auto", options: dict[str, Any] | None = None,
               available: int | None = None) -> None:
    """Raise OutOfMemoryError ("needs 5.80 GiB but only 3.10 GiB is free") when a GGUF model
    cannot fit; anything else (torch folders, remote, unknown names) passes through to the
    loader, which reports its own errors."""
    opts = options or {}
    if backend not in ("auto", "llama.cpp") or opts.get("base_url"):
        return
    from .catalogue import resolve
    from .errors import MiniCPMError

    try:
        resolved = resolve(model, model_dirs=opts.get("model_dirs"))
    except (MiniCPMError, ValueError):
        return  # the loader says why, with the same words
    if resolved.format != "gguf":
        return
    need, ctx = gguf_bytes_needed(resolved.path, opts.get("n_ctx"), str(opts.get("kv_type", "auto")),
                                  bool(opts.get("low_memory", False)))
    have = available_bytes() if available is None else available
    if need > have:
        raise OutOfMemoryError(f"{resolved.name} (weights and a {ctx}-token context)", need, have)
