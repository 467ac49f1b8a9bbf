"""Generation on the device: static KV cache, prefill, a decode step (captured as a CUDA graph on
CUDA), and a sampler that keeps everything on the device. Per token the host reads exactly one
value, the sampled id, to stream it."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ..sampling import SamplingParams
from . import kernels
from .model import MiniCPM


class Sampler:
    """Repetition penalty → greedy argmax, or temperature → top-k → top-p → draw, all on device
    (same order and cut-offs as minicpm.sampling.sample_token). Draws use the exponential race
    (argmax p/E, E ~ Exp(1)), which samples from p without a host-side multinomial."""

    def __init__(self, params: SamplingParams, vocab: int, device: torch.device,
                 history: list[int]):
        self.p = params
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(params.seed if params.seed is not None else random.randrange(2**63))
        self.seen: Tensor | None = None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
            if history:
                self.seen[torch.tensor(history, device=device)] = True

    def __call__(self, logits: Tensor) -> Tensor:
        """logits [V] fp32 → token id, a 1-element device tensor (no sync)."""
        p = self.p
        if self.seen is not None:
            pen = p.repetition_penalty
            logits = torch.where(self.seen, torch.where(logits > 0, logits / pen, logits * pen),
                                 logits)
        if p.greedy:
            tok = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / p.temperature
            if p.top_k:
                vals, idx = torch.topk(logits, min(int(p.top_k), logits.shape[-1]))
            else:
                vals, idx = torch.sort(logits, descending=True)
            probs = vals.softmax(dim=-1)
            if p.top_p < 1.0:  # keep the smallest prefix whose mass reaches top_p
                probs = probs * ((probs.cumsum(-1) - probs) < p.top_p)
            race = torch.empty_like(probs).exponential_(generator=self.gen)
            tok = idx[(probs / race).argmax(dim=-1, keepdim=True)]
        if self.seen is not None:
            self.seen[tok] = True
        return tok


class DecodeStep:
    """The one-token decode step over static buffers: token [1, 1] and position [1] in, logits
    [1, 1, V] out, attending over the whole static cache with a mask (static_shapes), so that
    nothing in it depends on a host value. ``run`` is exactly what CUDAGraphDecode captures;
    tests run it on CPU under minicpm.testing.capture.CaptureGuard."""

    def __init__(self, model: MiniCPM):
        dev = model.embed_tokens.weight.device
        self.model = model
        self.tok = torch.zeros(1, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)

    def run(self) -> Tensor:
        return self.model(self.tok, self.pos, static_shapes=True)


class CUDAGraphDecode:
    """DecodeStep.run captured once as a CUDA graph, on the model's device (streams, Triton
    launches and the capture all follow the current device, which need not be the model's).
    Capture writes scratch K/V at position 0, so it is done before any prefill."""

    def __init__(self, model: MiniCPM):
        self.step = DecodeStep(model)
        dev = self.step.tok.device
        with kernels.device_context(dev):
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: Triton autotune/compile and cuBLAS handles
                    self.step.run()
            torch.cuda.current_stream(dev).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self.step.run()

    def __call__(self, tok: Tensor, pos: Tensor) -> Tensor:
        self.step.tok.copy_(tok.view(1, 1))
        self.step.pos.copy_(pos)
        self.graph.replay()
        return self.logits


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Generator:
    """Owns the model's static cache for one sequence (batch 1).

    Prefix reuse (one slot): ``cached`` lists the tokens whose K/V sit at positions
    0..len-1 of the cache. A new prompt prefills only from its longest common prefix with them
    (keeping at least its last token, whose logits start decoding). A token joins ``cached``
    only once its K/V are written, so a cancelled or abandoned generation leaves a valid
    prefix; an image prefill (input embeddings, not ids) clears it."""

    def __init__(self, model: MiniCPM, n_ctx: int, cuda_graph: bool | None = None,
                 reuse_prefix: bool = True):
        self.model = model
        self.n_ctx = n_ctx
        self.device = model.embed_tokens.weight.device
        self.reuse_prefix = reuse_prefix
        self.cached: list[int] = []
        self.stats = {"prompts": 0, "prefix_hits": 0, "tokens_reused": 0, "tokens_prefilled": 0}
        with kernels.device_context(self.device):
            model.setup_caches(n_ctx)
        use_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        self._graph: CUDAGraphDecode | None = CUDAGraphDecode(model) if use_graph else None

    @property
    def cuda_graph(self) -> bool:
        return self._graph is not None

    @torch.inference_mode()
    def prefill(self, tokens: list[int] | Tensor, start: int = 0,
                input_embeds: Tensor | None = None) -> Tensor:
        """Write K/V for the prompt at positions start.. and return the last position's logits
        [V]. A vision model passes input_embeds [1, T, H] instead of tokens. Low level: it does
        not update ``cached`` (generate does)."""
        if input_embeds is None:
            ids = torch.as_tensor(tokens, dtype=torch.long, device=self.device).view(1, -1)
            t = ids.shape[1]
        else:
            ids, t = None, input_embeds.shape[1]
        with kernels.device_context(self.device):
            pos = torch.arange(start, start + t, device=self.device)
            logits = self.model(ids, pos, input_embeds=input_embeds, kv_len=start + t,
                                last_only=True)
        return logits[0, -1]

    @torch.inference_mode()
    def decode(self, tok: Tensor, pos: Tensor, pos_host: int) -> Tensor:
        """One token at position pos (device tensor [1]; pos_host is the same number, known on
        the host without a sync) → logits [V]."""
        with kernels.device_context(self.device):
            if self._graph is not None:
                return self._graph(tok, pos)[0, -1]
            return self.model(tok.view(1, 1), pos, kv_len=pos_host + 1)[0, -1]

    def reusable(self, prompt: list[int]) -> int:
        """How many leading tokens of ``prompt`` already have their K/V in the cache."""
        if not self.reuse_prefix:
            return 0
        cfg = self.model.cfg
        if cfg.rope_scaling and max(len(self.cached), len(prompt)) > cfg.max_position_embeddings:
            # dynamic NTK: past max_position_embeddings the rope base depends on the length at
            # which a key was written, so cached keys differ from a fresh prefill's
            return 0
        return min(common_prefix(self.cached, prompt), len(prompt) - 1)

    def _prefill_prompt(self, prompt: list[int], prefill_fn: Callable[[], Tensor] | None
                        ) -> Tensor:
        self.stats["prompts"] += 1
        if prefill_fn is not None:  # input embeddings: the ids do not say what was written
            self.cached = []
            return prefill_fn()
        start = self.reusable(prompt)
        self.cached = []  # nothing is trusted until the prefill has written its K/V
        logits = self.prefill(prompt[start:], start=start)
        self.cached = list(prompt)
        self.stats["prefix_hits"] += start > 0
        self.stats["tokens_reused"] += start
        self.stats["tokens_prefilled"] += len(prompt) - start
        return logits

    @torch.inference_mode()
    def generate(self, prompt: list[int], params: SamplingParams,
                 should_stop: Callable[[], bool] = lambda: False,
                 eos_ids: tuple[int, ...] = (), max_new: int | None = None,
                 prefill_fn: Callable[[], Tensor] | None = None) -> Iterator[int]:
        """Yield token ids (EOS not yielded unless params.ignore_eos) until EOS, max_new, the end
        of the context, or should_stop() (checked before every token). ``prefill_fn`` replaces
        the prefill of ``prompt`` (a vision model's prefill over input embeddings)."""
        n = len(prompt)
        if n >= self.n_ctx:
            raise ValueError(f"prompt of {n} tokens does not fit n_ctx={self.n_ctx}")
        if n == 0:
            raise ValueError("empty prompt")
        limit = self.n_ctx - n if max_new is None else min(max_new, self.n_ctx - n)
        sampler = Sampler(params, self.model.cfg.vocab_size, self.device, prompt)
        track = prefill_fn is None
        logits = self._prefill_prompt(prompt, prefill_fn)
        tok = sampler(logits)
        pos = torch.tensor([n], device=self.device)
        for i in range(limit):
            if should_stop():
                return
            t = int(tok.item())  # the one host sync per token
            if t in eos_ids and not params.ignore_eos:
                return
            yield t
            if i + 1 == limit or should_stop():  # cancelled while the caller held t: no decode
                return
            logits = self.decode(tok, pos, n + i)
            if track:
                self.cached.append(t)  # its K/V are written now
            tok = sampler(logits)
            pos += 1
