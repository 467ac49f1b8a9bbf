"""Read and check a GGUF file's header before llama.cpp sees it.

llama.cpp aborts or crashes on some broken files (a truncated tensor section can segfault on
first use under mmap); checking the header, every tensor's extent and the architecture here
turns those into a ModelFileError that names the file and the reason."""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelFileError, UnsupportedModelError

GGUF_MAGIC = b"GGUF"

# Text-generation architectures we run through llama.cpp. MiniCPM's own, its llama-format, and
# the small models people commonly point us at; others are refused by name rather than guessed.
SUPPORTED_ARCHS = {
    "llama", "minicpm", "minicpm3", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
    "mistral3", "granite", "olmo", "olmo2", "stablelm", "starcoder2", "smollm3",
}
MUP_KEYS = ("embedding_scale", "residual_scale", "logit_scale")

# MiniCPM-1/2's published μP constants (identical for 1B, 2B, 2B-128k and MoE-8x2B).
MINICPM_SCALE_EMB = 12.0
MINICPM_SCALE_DEPTH = 1.4
MINICPM_DIM_MODEL_BASE = 256

# GGUF metadata value types: (struct format, size) for scalars.
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_STRING, _ARRAY = 8, 9
_MAX_COUNT = 10_000_000


@dataclass
class GGUFSummary:
    path: Path
    version: int
    architecture: str
    metadata: dict[str, Any]  # scalars and strings; arrays as their length, except small ones
    tensors: dict[str, tuple[tuple[int, ...], int]]  # name -> (shape, ggml type)
    file_size: int
    parameters: int = 0
    missing_mup_keys: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_key(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def name(self) -> str:
        return str(self.get("general.name") or self.path.stem)

    @property
    def context_length(self) -> int:
        return int(self.arch_key("context_length", 2048))

    @property
    def n_layers(self) -> int:
        return int(self.arch_key("block_count", 0))

    @property
    def hidden_size(self) -> int:
        return int(self.arch_key("embedding_length", 0))

    @property
    def chat_template(self) -> str | None:
        t = self.get("tokenizer.chat_template")
        return t if isinstance(t, str) else None

    @property
    def quantization(self) -> str:
        import gguf

        ft = self.get("general.file_type")
        if ft is not None:
            try:
                return gguf.LlamaFileType(int(ft)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        counts: dict[int, int] = {}
        for shape, t in self.tensors.values():
            counts[t] = counts.get(t, 0) + math.prod(shape)
        t = max(counts, key=counts.__getitem__) if counts else 0
        return gguf.GGMLQuantizationType(t).name

    def mup_repairs(self) -> dict[str, float]:
        """kv_overrides restoring MiniCPM's published μP values for the keys this file lacks.

        llama.cpp's fallback for a missing logit_scale is 256/hidden, the inverse of what the
        model was trained with (hidden/256), so such files run silently wrong without this."""
        if self.architecture != "minicpm" or not self.missing_mup_keys:
            return {}
        values = {
            "embedding_scale": MINICPM_SCALE_EMB,
            "residual_scale": MINICPM_SCALE_DEPTH / math.sqrt(max(self.n_layers, 1)),
            "logit_scale": self.hidden_size / MINICPM_DIM_MODEL_BASE,
        }
        return {f"minicpm.{k}": float(values[k]) for k in self.missing_mup_keys}


class _Reader:
    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf, self.pos, self.path = buf, 0, path
        self.duplicate: str | None = None  # a string seen twice in a big string array

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ModelFileError(self.path, "truncated GGUF: header ends before its metadata does")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, size: int) -> Any:
        return struct.unpack(fmt, self.take(size))[0]

    def u32(self) -> int:
        return self.unpack("<I", 4)

    def u64(self) -> int:
        return self.unpack("<Q", 8)

    def string(self) -> str:
        n = self.u64()
        if n > len(self.buf):
            raise ModelFileError(self.path, "corrupt GGUF: a string is longer than the file")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(*_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.u32(), self.u64()
            if count > _MAX_COUNT:
                raise ModelFileError(self.path, f"corrupt GGUF: array of {count} items")
            if count <= 64:
                return [self.value(itype) for _ in range(count)]
            # Big arrays (vocabularies): skip over them; keep only their length. Except the
            # token list's duplicates: llama.cpp aborts on a vocabulary naming one twice.
            if itype in _SCALARS:
                self.take(count * _SCALARS[itype][1])
            elif itype == _STRING:
                seen: set[str] = set()
                for _ in range(count):
                    t = self.string()
                    if t in seen and self.duplicate is None:
                        self.duplicate = t
                    seen.add(t)
            else:
                for _ in range(count):
                    self.value(itype)
            return count
        raise ModelFileError(self.path, f"corrupt GGUF: unknown metadata value type {vtype}")


def read_gguf(path: str | Path) -> GGUFSummary:
    """Parse the header and check that every tensor lies inside the file. Raises ModelFileError
    (missing, empty, not GGUF, truncated, corrupt) or UnsupportedModelError."""
    import gguf

    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(p, "no such file")
    if p.is_dir():
        raise ModelFileError(p, "is a folder, not a GGUF file")
    size = p.stat().st_size
    if size < 24:
        raise ModelFileError(p, f"not a GGUF file (only {size} bytes)")
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        r = _Reader(buf, p)
        magic = r.take(4)
        if magic != GGUF_MAGIC:
            hint = " (a PyTorch/safetensors file? convert it to GGUF or load its folder with the torch backend)" \
                if magic[:2] in (b"PK", b"\x80\x02") or magic[:1] == b"{" else ""
            raise ModelFileError(p, f"not a GGUF file (starts with {magic!r}){hint}")
        version = r.u32()
        if version not in (2, 3):
            raise ModelFileError(p, f"unsupported GGUF version {version}")
        n_tensors, n_kv = r.u64(), r.u64()
        if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
            raise ModelFileError(p, "corrupt GGUF header (impossible tensor or key count)")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            r.duplicate = None
            meta[key] = r.value(r.u32())
            if key == "tokenizer.ggml.tokens" and r.duplicate is not None:
                raise ModelFileError(p, f"its vocabulary lists the token {r.duplicate[:40]!r} "
                                        "twice (llama.cpp would abort on it)")
        tensors: dict[str, tuple[tuple[int, ...], int]] = {}
        extents = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.u32()
            if n_dims > 8:
                raise ModelFileError(p, f"corrupt GGUF: tensor {name!r} has {n_dims} dimensions")
            shape = tuple(r.u64() for _ in range(n_dims))
            ttype, offset = r.u32(), r.u64()
            try:
                block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
            except (ValueError, KeyError):
                raise ModelFileError(p, f"tensor {name!r} has unknown type {ttype} "
                                        "(made by a newer llama.cpp?)") from None
            nbytes = math.prod(shape) // block * type_size
            tensors[name] = (shape, ttype)
            extents.append((name, offset, nbytes))
        align = int(meta.get("general.alignment", 32))
        data_start = (r.pos + align - 1) // align * align
    for name, offset, nbytes in extents:
        if data_start + offset + nbytes > size:
            raise ModelFileError(
                p, f"truncated GGUF: tensor {name!r} needs bytes up to "
                   f"{data_start + offset + nbytes} but the file has {size} (incomplete download?)")
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(p, "GGUF has no general.architecture key")
    if arch not in SUPPORTED_ARCHS:
        what = " (a vision projector: pass it as mmproj beside a MiniCPM-V model)" \
            if arch == "clip" else ""
        raise UnsupportedModelError(
            p, f"unsupported architecture {arch!r}{what}; supported: "
               + ", ".join(sorted(SUPPORTED_ARCHS)))
    summary = GGUFSummary(p, version, arch, meta, tensors, size,
                          parameters=sum(math.prod(s) for s, _ in tensors.values()))
    check_hparams(summary)
    if arch == "minicpm":
        summary.missing_mup_keys = [k for k in MUP_KEYS if f"minicpm.{k}" not in meta]
    return summary


# llama.cpp's limits (src/llama-hparams.h) and the architectures whose graph asserts that the
# rope covers the whole head (GGML_ASSERT(n_embd_head == n_rot), e.g. models/granite.cpp,
# which minicpm reuses). Files outside them abort the process that loads them.
LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 512
FULL_ROPE_ARCHS = {"llama", "minicpm", "granite", "mistral3", "qwen2", "smollm3"}


def check_hparams(s: GGUFSummary) -> None:
    """Refuse, with a reason, the hyper-parameters that reach a llama.cpp assert (an abort of
    the whole process) or a vague "failed to load": crafted or broken downloads."""

    def bad(reason: str) -> ModelFileError:
        return ModelFileError(s.path, f"{reason} (a broken or crafted file; llama.cpp would "
                                      "fail or abort on it)")

    def num(key: str) -> int | None:
        v = s.arch_key(key)
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    layers = num("block_count")
    if layers is not None and not 0 < layers <= LLAMA_MAX_LAYERS:
        raise bad(f"block_count is {layers}; llama.cpp takes 1 to {LLAMA_MAX_LAYERS}")
    experts, used = num("expert_count"), num("expert_used_count")
    if experts is not None and experts > LLAMA_MAX_EXPERTS:
        raise bad(f"expert_count is {experts}; llama.cpp takes at most {LLAMA_MAX_EXPERTS}")
    if used and used > (experts or 0):
        raise bad(f"expert_used_count ({used}) is more than expert_count ({experts or 0})")
    embd, heads, kv = num("embedding_length"), num("attention.head_count"), \
        num("attention.head_count_kv")
    if heads is None:
        return
    if heads <= 0:
        raise bad(f"attention.head_count is {heads}")
    if kv is not None and (kv <= 0 or heads % kv):
        raise bad(f"attention.head_count ({heads}) is not a multiple of "
                  f"attention.head_count_kv ({kv})")
    head_dim = num("attention.key_length")
    if head_dim is None and embd is not None:
        if embd % heads:
            raise bad(f"embedding_length ({embd}) does not divide into {heads} heads")
        head_dim = embd // heads
    rot = num("rope.dimension_count")
    if s.architecture in FULL_ROPE_ARCHS and rot is not None and head_dim is not None \
            and rot != head_dim:
        raise bad(f"rope.dimension_count ({rot}) differs from the head size ({head_dim})")
