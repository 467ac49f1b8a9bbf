"""MiniCPM-V 2.0 behind the engine's Backend contract (the torch engine's vision model).

Text-only chats go through the shared token pipeline unchanged. With images, ``stream_chat``
puts each image's placeholder text in front of the last user message (as MiniCPM-V 2.0's
``chat`` does: ``placeholder + "\\n" + question``), adds the figure summary for matplotlib
figures, and streams through the same pipeline with the prefill step replaced by one over
input embeddings (text embeddings with the image features spliced in). Image encoding runs
inside that prefill, so time-to-first-token includes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .. import templates
from ..backends.base import Backend, EngineInfo, Usage, stream_text
from ..catalogue import ResolvedModel
from ..errors import BackendUnavailableError, ContextOverflowError, ImageError
from ..sampling import SamplingParams
from . import slicing
from .model import MiniCPMV, load_minicpmv, special_ids, tokenize_with_images

log = logging.getLogger("minicpm.vision")

DEFAULT_N_CTX = 4096
MAX_IMAGES = 8  # per request: each costs up to 10 × 64 tokens and 10 tower passes


def image_prompt(content: str, layouts: Sequence[slicing.SliceLayout], query_num: int,
                 summaries: Sequence[str] = ()) -> str:
    """The user turn with images: every image's placeholder, a newline, the figure summaries,
    then the question."""
    head = "".join(slicing.placeholder(lay, query_num) for lay in layouts)
    notes = "".join(f"Figure data (read from the plot objects):\n{s}\n\n" for s in summaries if s)
    return f"{head}\n{notes}{content}"


class TorchVisionBackend(Backend):
    name = "torch"

    def __init__(self, resolved: ResolvedModel, device: str = "cpu", dtype: str | None = None,
                 quant: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, cuda_graph: bool | None = None, **ignored: Any):
        from ..torch.generate import Generator
        from ..torch.quantize import QUANT_MODES, quantize_model
        from ..torch.tokenizer import Tokenizer

        if ignored:
            log.debug("vision backend ignores options: %s", ", ".join(sorted(ignored)))
        device = str(device or "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("device='cuda' but this PyTorch sees no CUDA GPU; "
                                          "use device='cpu'")
        if n_threads and device == "cpu":
            torch.set_num_threads(int(n_threads))
        quant = None if quant in (None, "none") else quant
        if quant is not None and quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {QUANT_MODES} or None, got {quant!r}")
        self.model: MiniCPMV
        self.model, raw = load_minicpmv(resolved.path, device=device, dtype=dtype)
        # Weight-only quantization of the language model only: it holds ~85% of the weights,
        # and the vision tower runs once per picture, where its precision matters more.
        swapped = quantize_model(self.model.llm, quant) if quant else 0
        text = self.model.llm.cfg
        ctx = int(n_ctx or min(text.max_position_embeddings, DEFAULT_N_CTX))
        self.tok = Tokenizer(resolved.path, bos_id=text.bos_token_id, eos_ids=text.eos_token_id)
        self.ids_of = special_ids(self.tok, resolved.path)
        self.gen = Generator(self.model.llm, ctx, cuda_graph=cuda_graph)
        self.chat_template = templates.MINICPM  # MiniCPM-V 2.0: <用户>…<AI>, like MiniCPM-2B
        self.bos_text = self.tok.token_text(self.tok.bos_id)
        self.eos_text = self.tok.token_text(self.tok.eos_ids[0] if self.tok.eos_ids else None)
        self.adds_bos = self.tok.adds_bos
        self._prefill: Callable[[], torch.Tensor] | None = None
        self.last_image_seconds = 0.0
        dt = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        v = self.model.vcfg
        qname = dt if not quant else f"{quant} weight-only LLM ({dt} compute, {dt} vision)"
        self.info = EngineInfo(
            model=resolved.name, architecture="minicpmv", quantization=qname, context_length=ctx,
            backend=self.name, device=device, stand_in=resolved.stand_in, vision=True,
            path=str(resolved.path), parameters=sum(p.numel() for p in self.model.parameters()),
            extra={"dtype": dt, "quant": quant, "quantized_layers": swapped,
                   "query_num": v.query_num, "max_slice_nums": v.max_slice_nums,
                   "scale_resolution": v.scale_resolution, "slice_mode": v.slice_mode,
                   "vision_layers": v.tower.kept_layers, "tokenizer": self.tok.kind})

    # --- token pipeline ------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self.tok.encode(text, add_bos=add_bos)

    def generate_tokens(self, prompt_tokens: list[int], params: SamplingParams,
                        cancel: threading.Event) -> Iterator[tuple[int, bytes]]:
        prefill, self._prefill = self._prefill, None  # one-shot: set by stream_chat
        for t in self.gen.generate(prompt_tokens, params, should_stop=cancel.is_set,
                                   eos_ids=tuple(self.tok.eos_ids), prefill_fn=prefill):
            yield t, self.tok.token_bytes(t)

    # --- images --------------------------------------------------------------------------------
    def prepare(self, messages: list[dict[str, str]], images: Sequence[Any]
                ) -> tuple[list[int], Callable[[], torch.Tensor]]:
        """Prompt ids with placeholders, and the deferred step that encodes the images and
        returns the input embeddings [1, T, H]."""
        from ..figures import is_figure, summarize_figure
        from ..images import to_pil

        if len(images) > MAX_IMAGES:
            raise ImageError(f"{len(images)} images in one request; at most {MAX_IMAGES}")
        pils, summaries = [], []
        for i, im in enumerate(images):
            try:
                pils.append(to_pil(im))
            except ImageError as e:
                raise ImageError(f"image {i + 1}: {e}") from e
            if is_figure(im):
                summaries.append(summarize_figure(im))
        layouts = [self.model.layout(p.size) for p in pils]
        msgs = [dict(m) for m in messages]
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
        if last_user is None:
            raise ValueError("images need a user message to go with")
        msgs[last_user]["content"] = image_prompt(msgs[last_user]["content"], layouts,
                                                  self.model.vcfg.query_num, summaries)
        text = templates.render(self.chat_template, msgs, self.bos_text, self.eos_text,
                                self.adds_bos)
        ids = tokenize_with_images(self.tok, text, self.ids_of)

        def prefill() -> torch.Tensor:
            t0 = time.perf_counter()
            feats = [self.model.encode_image(p)[1] for p in pils]
            dev = self.model.llm.embed_tokens.weight.device
            features = torch.cat(feats) if feats else None
            self.last_image_seconds = time.perf_counter() - t0
            with torch.inference_mode():
                embeds = self.model.embed(torch.tensor(ids, device=dev), features,
                                          self.ids_of[slicing.IM_START],
                                          self.ids_of[slicing.IM_END])
            return self.gen.prefill(ids, input_embeds=embeds)

        return ids, prefill

    def stream_chat(self, messages: list[dict[str, str]], images: Sequence[Any],
                    params: SamplingParams, cancel: threading.Event, usage: Usage
                    ) -> Iterator[str] | None:
        if not images:
            return None
        ids, prefill = self.prepare(messages, images)
        ctx = self.info.context_length
        reserve = min(params.max_tokens, max(16, ctx // 8))
        if len(ids) + reserve > ctx:
            raise ContextOverflowError(len(ids), ctx, reserve=reserve)
        self._prefill = prefill
        return stream_text(self, ids, params, cancel, usage,
                           templates.stop_strings(self.chat_template), lstrip=True)

    def close(self) -> None:
        import gc

        self.model = None  # type: ignore[assignment]
        self.gen = None  # type: ignore[assignment]
        gc.collect()
