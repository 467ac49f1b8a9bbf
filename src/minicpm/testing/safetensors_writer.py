"""A minimal .safetensors writer (float32, float16, bfloat16 from float32 numpy arrays), by hand
because numpy has no bfloat16 and safetensors.numpy would need ml_dtypes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (half to even), still as float32: what a
    bfloat16 checkpoint holds, for references that compare against one."""
    return (_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def _bf16_bits(a: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


_ST_DTYPES = {"float32": ("F32", np.float32), "float16": ("F16", np.float16),
              "bfloat16": ("BF16", None)}


def save_safetensors(tensors: dict[str, np.ndarray], path: str | Path,
                     dtype: str = "float32") -> int:
    """Write a .safetensors file (8-byte header length, JSON header, raw little-endian data).
    Written by hand because numpy has no bfloat16 and safetensors.numpy would need ml_dtypes.
    Returns the number of tensor bytes."""
    tag, np_dtype = _ST_DTYPES[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, a in tensors.items():
        raw = _bf16_bits(a) if np_dtype is None else np.ascontiguousarray(a, dtype=np_dtype)
        data = raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": tag, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the format asks for 8-byte alignment of the data
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)
    return offset
