"""The torch backend: our own PyTorch MiniCPM (src/minicpm/torch) behind the Backend contract.

``TorchBackendBase`` is what the text model (``TorchBackend``) and MiniCPM-V
(``minicpm.vision.backend.TorchVisionBackend``) share: option checks, tokenizer, the generator
over the language model's static cache, BOS/EOS, ``tokenize``, ``generate_tokens``, ``close``.
torch is imported lazily, inside the constructors.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import templates
from ..catalogue import ResolvedModel
from ..errors import BackendUnavailableError, UnsupportedModelError
from ..sampling import SamplingParams
from .base import Backend, EngineInfo

if TYPE_CHECKING:
    import torch

    from ..torch.generate import Generator
    from ..torch.model import MiniCPM
    from ..torch.tokenizer import Tokenizer

log = logging.getLogger("minicpm.torch")

DEFAULT_N_CTX = 4096


class TorchBackendBase(Backend):
    """Shared by the torch text and vision backends."""

    name = "torch"
    tok: Tokenizer
    gen: Generator

    @staticmethod
    def check_options(device: str | None, quant: str | None, n_threads: int | None,
                      ignored: dict[str, Any]) -> tuple[str, str | None]:
        """→ (device, quant or None); refuses CUDA without a GPU and unknown quant modes."""
        import torch

        from ..torch.quantize import QUANT_MODES

        if ignored:
            log.debug("torch backend ignores options: %s", ", ".join(sorted(ignored)))
        device = str(device or "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("device='cuda' but this PyTorch sees no CUDA GPU "
                                          f"(torch {torch.__version__}); use device='cpu'")
        if quant not in (None, "none", *QUANT_MODES):
            raise ValueError(f"quant must be one of {QUANT_MODES} or None, got {quant!r}")
        if n_threads and device == "cpu":
            torch.set_num_threads(int(n_threads))
        return device, None if quant == "none" else quant

    def start_generation(self, llm: MiniCPM, folder: Path, n_ctx: int,
                         cuda_graph: bool | None) -> None:
        """Tokenizer, BOS/EOS texts and the generator (static cache, CUDA graph) for ``llm``."""
        from ..torch.generate import Generator
        from ..torch.tokenizer import Tokenizer

        cfg = llm.cfg
        self.tok = Tokenizer(folder, bos_id=cfg.bos_token_id, eos_ids=cfg.eos_token_id)
        self.gen = Generator(llm, n_ctx, cuda_graph=cuda_graph)
        self.bos_text = self.tok.token_text(self.tok.bos_id)
        self.eos_text = self.tok.token_text(self.tok.eos_ids[0] if self.tok.eos_ids else None)
        self.adds_bos = self.tok.adds_bos

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self.tok.encode(text, add_bos=add_bos)

    def generate_tokens(self, prompt_tokens: list[int], params: SamplingParams,
                        cancel: threading.Event,
                        prefill: Callable[[], torch.Tensor] | None = None
                        ) -> Iterator[tuple[int, bytes]]:
        """``prefill`` replaces the prefill of ``prompt_tokens`` (MiniCPM-V's, over input
        embeddings with the image features spliced in)."""
        for t in self.gen.generate(prompt_tokens, params, should_stop=cancel.is_set,
                                   eos_ids=tuple(self.tok.eos_ids), prefill_fn=prefill):
            yield t, self.tok.token_bytes(t)

    def close(self) -> None:
        self.model = None
        self.gen = None  # type: ignore[assignment]
        gc.collect()


class TorchBackend(TorchBackendBase):
    def __init__(self, resolved: ResolvedModel, device: str = "cpu",
                 dtype: str | None = None, quant: str | None = None,
                 n_ctx: int | None = None, n_threads: int | None = None,
                 cuda_graph: bool | None = None, **ignored: Any):
        from ..torch import loader
        from ..torch.quantize import quantize_model

        if resolved.format != "hf":
            raise UnsupportedModelError(
                resolved.path, "the torch backend loads Hugging Face folders (config.json + "
                               "safetensors); run GGUF files with backend='llama.cpp'")
        device, quant = self.check_options(device, quant, n_threads, ignored)
        p = loader.plan(resolved.path)
        ctx = int(n_ctx or min(p.config.max_position_embeddings, DEFAULT_N_CTX))
        model, p = loader.load_model(resolved.path, device=device, dtype=dtype, n_ctx=ctx)
        swapped = quantize_model(model, quant) if quant else 0
        self.model = model
        self.cfg = p.config
        self.start_generation(model, resolved.path, ctx, cuda_graph)
        file_template = self.tok.config.get("chat_template")
        if isinstance(file_template, list):  # named templates: take the default one
            file_template = next((t.get("template") for t in file_template
                                  if t.get("name") == "default"), None)
        self.chat_template = templates.choose_template(p.config.architecture, file_template)
        dt = str(next(model.parameters()).dtype).removeprefix("torch.")
        qname = dt if not quant else f"{quant} weight-only ({dt} compute)"
        if p.gptq:
            qname = f"GPTQ int4 dequantized to {dt}" + (f", requantized {quant}" if quant else "")
        self.info = EngineInfo(
            model=resolved.name, architecture=p.config.architecture, quantization=qname,
            context_length=ctx, backend=self.name, device=device, stand_in=resolved.stand_in,
            path=str(resolved.path), parameters=p.dense_params,
            extra={"dtype": dt, "quant": quant, "quantized_layers": swapped,
                   "cuda_graph": self.gen.cuda_graph, "prefix_cache": self.gen.stats,
                   "tokenizer": self.tok.kind, "experts": p.config.num_experts,
                   "rope_scaling": p.config.rope_scaling,
                   "n_ctx_train": p.config.max_position_embeddings})
