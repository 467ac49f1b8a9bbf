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
from dataclasses import dataclass
from typing import Any

import torch

from .. import templates
from ..backends.base import EngineInfo, Usage, stream_text
from ..backends.torch_engine import DEFAULT_N_CTX, TorchBackendBase
from ..catalogue import ResolvedModel
from ..errors import ImageError, check_context
from ..prompts import output_reserve
from ..sampling import SamplingParams
from . import slicing
from .model import MiniCPMV, load_minicpmv, special_ids, tokenize_with_images

log = logging.getLogger("minicpm.vision")

MAX_IMAGES = 8  # per request: each costs up to 10 × 64 tokens and 10 tower passes


def image_prompt(content: str, layouts: Sequence[slicing.SliceLayout], query_num: int,
                 summaries: Sequence[str] = ()) -> str:
    """The user turn with images: every image's placeholder, a newline, the figure summaries,
    then the question."""
    head = "".join(slicing.placeholder(lay, query_num) for lay in layouts)
    notes = "".join(f"Figure data (read from the plot objects):\n{s}\n\n" for s in summaries if s)
    return f"{head}\n{notes}{content}"


class TorchVisionBackend(TorchBackendBase):
    def __init__(self, resolved: ResolvedModel, device: str = "cpu", dtype: str | None = None,
                 quant: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, cuda_graph: bool | None = None, **ignored: Any):
        from ..torch.quantize import quantize_model

        device, quant = self.check_options(device, quant, n_threads, ignored)
        self.model: MiniCPMV
        self.model, raw = load_minicpmv(resolved.path, device=device, dtype=dtype)
        # Weight-only quantization of the language model only: it holds ~85% of the weights,
        # and the vision tower runs once per picture, where its precision matters more.
        swapped = quantize_model(self.model.llm, quant) if quant else 0
        text = self.model.llm.cfg
        ctx = int(n_ctx or min(text.max_position_embeddings, DEFAULT_N_CTX))
        self.start_generation(self.model.llm, resolved.path, ctx, cuda_graph)
        self.ids_of = special_ids(self.tok, resolved.path)
        self.chat_template = templates.MINICPM  # MiniCPM-V 2.0: <用户>…<AI>, like MiniCPM-2B
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
                   "vision_layers": v.tower.kept_layers, "tokenizer": self.tok.kind,
                   "cuda_graph": self.gen.cuda_graph, "prefix_cache": self.gen.stats})

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
        reserve = output_reserve(ctx, params.max_tokens)
        check_context(len(ids), ctx, reserve)
        return stream_text(_ImageTurn(self, prefill), ids, params, cancel, usage,  # type: ignore[arg-type]
                           templates.stop_strings(self.chat_template), lstrip=True)


@dataclass
class _ImageTurn:
    """One image prompt as the token pipeline (stream_text) sees a backend: its info, and
    generate_tokens with the prefill over input embeddings passed explicitly."""

    backend: TorchVisionBackend
    prefill: Callable[[], torch.Tensor]

    @property
    def info(self) -> EngineInfo:
        return self.backend.info

    def generate_tokens(self, prompt_tokens: list[int], params: SamplingParams,
                        cancel: threading.Event) -> Iterator[tuple[int, bytes]]:
        return self.backend.generate_tokens(prompt_tokens, params, cancel, prefill=self.prefill)
