"""CPU backend: GGUF files through llama.cpp (llama-cpp-python)."""

from __future__ import annotations

import ctypes
import logging
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from .. import templates
from ..catalogue import STANDIN_HINT, ResolvedModel
from ..cpu_share import ThreadTuner, physical_cores
from ..errors import MiniCPMError, ModelFileError, check_context
from ..gguf_check import read_gguf
from ..sampling import SamplingParams
from ..speculative import DraftLength, NGramDrafter, SpecStats, verify
from .base import Backend, EngineInfo, Usage
from .llamacpp_grammar import make_sampler
from .llamacpp_kv import KVSession, default_cache_mb, total_ram_bytes
from .llamacpp_vocab import FimTokens, read_fim_tokens
from .prompt_cache import PromptCache

log = logging.getLogger("minicpm.llamacpp")

DEFAULT_N_CTX = 4096

# KV cache types, one for K and V alike ("q8_0") or a K/V pair ("q8_0/f16"). f16 is llama.cpp's
# default; q8_0 halves it, q4_0 quarters it. A quantized V needs flash attention, and this
# llama.cpp's CPU flash attention runs its fast tiled prefill only for f16 K/V: with q8_0 K/V
# MiniCPM-2B prefills a 3k prompt at half the speed, and a follow-up's first token comes 3.6x
# later (bench/kv_memory.py rss; README, Performance). So once the f16 cache at n_ctx would pass
# AUTO_QUANTIZE_ABOVE_MB, "auto" = q8_0 K with f16 V and no flash attention (fast prefill, 282
# KB per token on MiniCPM-2B instead of 368) on machines with at least AUTO_FAST_MIN_RAM_GB,
# and q8_0 K/V (196 KB per token, slower prefill) below that; low_memory takes q4_0 K/V.
KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2, "f32": 0}  # GGML_TYPE_* ids (f32: for tests)
KV_BYTES_PER_ELEM = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "f32": 4.0}
AUTO_KV_FAST, AUTO_KV_COMPACT = "q8_0/f16", "q8_0"
AUTO_QUANTIZE_ABOVE_MB = 256
AUTO_FAST_MIN_RAM_GB = 8
# low_memory=True: q4_0 KV and smaller batches (smaller compute buffers) for 4 GB laptops.
LOW_MEMORY = {"kv_type": "q4_0", "n_batch": 128}
SPECULATIVE_MODES = ("auto", "on", "off")
REPACKED_TYPES = {2, 12, 20}  # GGML_TYPE_Q4_0, Q4_K, IQ4_NL: repacked by ggml-cpu on x86
# speculative="auto" turns prompt lookup on for model files of at least 1 GB (MiniCPM-2B Q4:
# 1.5 GB). bench/speculative.py: on the 135M stand-in the median code-edit speedup was 1.16x
# (< 1.2: off); on MiniCPM-2B shapes a 5-token verify costs 1.4x one decode step, which with
# the stand-in's acceptance traces prices the same tasks at 1.4-2.2x (README, Performance).
SPECULATIVE_MIN_BYTES = 1_000_000_000


def split_kv_type(kv_type: str) -> tuple[str, str]:
    """"q8_0" → ("q8_0", "q8_0"); "q8_0/f16" → K q8_0, V f16."""
    k, slash, v = kv_type.partition("/")
    v = v if slash else k
    if k not in KV_TYPES or v not in KV_TYPES:
        raise ValueError(f"kv_type must be auto, one of {', '.join(KV_TYPES)}, or a K/V pair "
                         f"such as q8_0/f16 (got {kv_type!r})")
    return k, v


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    supports_grammar = supports_logprobs = True

    def __init__(self, resolved: ResolvedModel, n_ctx: int | None = None,
                 n_threads: int | str | None = None, n_batch: int | None = None,
                 repair_mup: bool = True, verbose: bool = False, mmproj: str | None = None,
                 cache_mb: float | None = None, kv_type: str = "auto",
                 flash_attn: bool | None = None, low_memory: bool = False,
                 speculative: str | bool = "auto", draft_max: int = 8,
                 use_mmap: bool | None = None, **ignored: Any):
        import llama_cpp

        if ignored:
            log.debug("llama.cpp backend ignores options: %s", ", ".join(sorted(ignored)))
        summary = read_gguf(resolved.path)
        overrides = summary.mup_repairs()
        if overrides:
            missing = ", ".join(f"minicpm.{k}" for k in summary.missing_mup_keys)
            if not repair_mup:
                raise ModelFileError(
                    resolved.path,
                    f"MiniCPM GGUF lacks {missing}; llama.cpp would fall back to an inverted logit "
                    "scale and answer wrongly. Re-convert with a current convert_hf_to_gguf.py, "
                    "or load with repair_mup=True to use MiniCPM's published values")
            log.warning("%s lacks %s: using MiniCPM's published values %s",
                        resolved.path, missing, overrides)
        self.summary = summary
        # n_threads pins a count; None / 0 / "auto": the free cores, re-chosen while running.
        fixed = None if n_threads in (None, 0, "0", "auto") else int(n_threads)
        threads = fixed or physical_cores()
        ctx = int(n_ctx or min(summary.context_length, DEFAULT_N_CTX))
        n_batch = int(n_batch or (LOW_MEMORY["n_batch"] if low_memory else 512))
        if kv_type == "auto" and low_memory:
            kv_type = str(LOW_MEMORY["kv_type"])
        kv = self._choose_kv_type(kv_type, ctx, summary)
        type_k, type_v = split_kv_type(kv)
        speculative = {True: "on", False: "off"}.get(speculative, speculative)  # bool → mode
        if speculative not in SPECULATIVE_MODES:
            raise ValueError(f"speculative must be one of {SPECULATIVE_MODES}")
        # llama.cpp stores a quantized V cache only with flash attention.
        v_quantized = type_v not in ("f16", "f32")
        fa = bool(flash_attn) if flash_attn is not None else v_quantized
        if v_quantized and not fa:
            raise ValueError(f"kv_type={kv} needs flash_attn (llama.cpp quantizes V only with it)")
        if use_mmap is None:
            # llama.cpp's CPU backend repacks these types into its own buffers at load: with
            # mmap the file's pages stay mapped and resident next to the copy (MiniCPM-2B Q4_0:
            # 3.6 GB RSS after load instead of 2.3 GB). Without mmap it reads them once.
            use_mmap = not any(t in REPACKED_TYPES for _, t in summary.tensors.values())
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(resolved.path), n_ctx=ctx, n_threads=threads,
                n_threads_batch=threads, n_batch=min(n_batch, ctx), n_ubatch=min(n_batch, ctx),
                use_mmap=use_mmap, verbose=verbose, kv_overrides=overrides or None,
                flash_attn=fa, type_k=KV_TYPES[type_k], type_v=KV_TYPES[type_v])
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelFileError(resolved.path, f"llama.cpp could not load it ({e})") from e
        budget = default_cache_mb() if cache_mb is None else float(cache_mb)
        self.kv = KVSession(self.llm, PromptCache(int(budget * 2**20)))
        self.threads = ThreadTuner(self._set_threads, fixed=fixed, physical=threads)
        self.kv.tune = self.threads.tick
        self.kv_type, self.flash_attn = kv, fa
        self.speculative = self._speculative_default(summary) if speculative == "auto" \
            else speculative == "on"
        self.draft_max = int(draft_max)
        self.spec_stats = SpecStats()
        self._lib = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)  # llama.cpp's C API
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self.chat_template = templates.choose_template(summary.architecture, summary.chat_template)
        self.bos_text = self._token_text(self.llm.token_bos())
        self.eos_text = self._token_text(self.llm.token_eos())
        self.adds_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        entry = resolved.entry
        self.info = EngineInfo(
            model=resolved.name if (resolved.stand_in or entry) else summary.name,
            architecture=summary.architecture,
            quantization=summary.quantization,
            context_length=self.llm.n_ctx(),
            backend=self.name,
            device="cpu",
            stand_in=resolved.stand_in,
            vision=False,
            path=str(resolved.path),
            parameters=summary.parameters,
            hint=STANDIN_HINT if resolved.stand_in else None,
            extra={"n_threads": threads if fixed else "auto", "n_ctx_train": summary.context_length,
                   "mup_repaired": sorted(overrides), "file_size": summary.file_size,
                   "kv_type": kv, "flash_attn": fa, "n_batch": n_batch,
                   "prompt_cache_mb": budget, "speculative": self.speculative,
                   "use_mmap": use_mmap},
        )
        # MiniCPM-V GGUFs come as a language model plus a vision projector (mmproj) beside it.
        # An mmproj given by name must work; one merely found beside the file (a downloads
        # folder may hold projectors for other models) is skipped with a warning if it does not fit.
        self.vision: Any = None
        projector = mmproj or resolved.mmproj
        if projector:
            from .llamacpp_vision import LlamaCppVision

            try:
                self.vision = LlamaCppVision(self.llm, projector, verbose=verbose)
            except MiniCPMError as e:
                if mmproj:
                    self.close()
                    raise
                log.warning("not using %s for images: %s", projector, e)
                self.info.extra["mmproj_skipped"] = str(e)
            except BaseException:
                self.close()
                raise
            if self.vision is not None:
                self.info.vision = True
                self.info.extra["mmproj"] = str(projector)

    def _token_text(self, tok: int) -> str:
        if tok < 0:
            return ""
        return self._piece(tok, special=True).decode("utf-8", errors="replace")

    def _piece(self, tok: int, special: bool = False) -> bytes:
        """A token's bytes, without llama.cpp's leading-space stripping (lstrip=0)."""
        key = tok if not special else -tok - 1
        piece = self._pieces.get(key)
        if piece is None:
            n = self._lib.llama_token_to_piece(self._vocab, tok, self._piece_buf,
                                               len(self._piece_buf), 0, special)
            piece = self._piece_buf.raw[:max(n, 0)]
            self._pieces[key] = piece
        return piece

    def vocab(self) -> Any:  # the llama_vocab pointer, for the grammar sampler
        return self._vocab

    def fim_tokens(self) -> FimTokens | None:
        return read_fim_tokens(self._lib, self._vocab, self._piece)

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        # special=True: the template's turn markers (<用户>, <|im_start|>) are real tokens.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    # --- memory and defaults -----------------------------------------------------------------
    @staticmethod
    def kv_elements_per_token(summary: Any) -> int:
        """K + V elements one token adds to the cache (all layers)."""
        heads = int(summary.arch_key("attention.head_count", 1) or 1)
        kv_heads = int(summary.arch_key("attention.head_count_kv", heads) or heads)
        head_dim = summary.hidden_size // heads
        return 2 * summary.n_layers * kv_heads * head_dim

    @classmethod
    def _choose_kv_type(cls, kv_type: str, n_ctx: int, summary: Any,
                        ram_bytes: int | None = None) -> str:
        if kv_type != "auto":
            split_kv_type(kv_type)  # raises on a bad name
            return kv_type
        try:
            elems = cls.kv_elements_per_token(summary)
            heads = int(summary.arch_key("attention.head_count", 1) or 1)
            head_dim = summary.hidden_size // heads
        except (TypeError, ValueError, ZeroDivisionError):
            return "f16"
        f16_mb = elems * 2 * n_ctx / 2**20
        # Quantized blocks hold 32 values: rows must be a multiple of 32 long.
        if f16_mb <= AUTO_QUANTIZE_ABOVE_MB or head_dim % 32:
            return "f16"
        ram = ram_bytes if ram_bytes is not None else total_ram_bytes()
        return AUTO_KV_FAST if ram >= AUTO_FAST_MIN_RAM_GB * 2**30 else AUTO_KV_COMPACT

    @staticmethod
    def _speculative_default(summary: Any) -> bool:
        """On by default only where it was measured to pay (README, Performance): big,
        memory-bound models, not the compute-bound stand-in."""
        return summary.file_size >= SPECULATIVE_MIN_BYTES

    def stats(self) -> dict[str, Any]:
        """Prompt cache, speculative decoding and memory, for /minicpm/status and the bench."""
        out: dict[str, Any] = {"prompt_cache": self.kv.cache.to_dict(),
                               "speculative": dict(self.spec_stats.to_dict(),
                                                   enabled=self.speculative),
                               "kv": {"type": self.kv_type, "flash_attn": self.flash_attn,
                                      "n_ctx": self.kv.n_ctx, "live_tokens": self.kv.n_tokens,
                                      "context_mb": round(self._kv_context_bytes() / 2**20, 1)}}
        out["prompt_cache"]["last"] = dict(self.kv.last_prepare)
        out["threads"] = self.threads.to_dict()
        if "grammar_stats" in self.__dict__:  # constrained sampling ran (llamacpp_grammar.py)
            out["grammar"] = self.grammar_stats.to_dict()
        try:
            import psutil

            out["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
        except Exception:  # pragma: no cover - psutil is a dependency
            pass
        return out

    def _kv_context_bytes(self) -> int:
        try:
            elems = self.kv_elements_per_token(self.summary)
        except (TypeError, ValueError, ZeroDivisionError):
            return 0
        type_k, type_v = split_kv_type(self.kv_type)
        per_elem = (KV_BYTES_PER_ELEM[type_k] + KV_BYTES_PER_ELEM[type_v]) / 2
        return int(elems * per_elem * self.kv.n_ctx)

    # --- generation ----------------------------------------------------------------------------
    def _set_threads(self, n: int, n_batch: int) -> None:
        """cpu_share.ThreadTuner's hook: takes effect from the next llama_decode."""
        self._lib.llama_set_n_threads(self.llm.ctx, n, n_batch)

    def _is_eog(self, tok: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, tok))

    def generate_tokens(self, prompt_tokens: list[int], params: SamplingParams,
                        cancel: threading.Event) -> Iterator[tuple[int, bytes]]:
        self.threads.before_request()  # the cores free now (a cell may have started computing)
        try:
            yield from self._generate_tokens(prompt_tokens, params, cancel)
        finally:
            try:
                self.kv.warm_spare()  # while the user reads: a buffer for the next save
            except Exception:  # pragma: no cover - an optimisation must not fail a request
                log.exception("could not prepare a snapshot buffer")

    def prefill_tokens(self, tokens: list[int], cancel: threading.Event, chunk_tokens: int = 64,
                       yield_to: Any = None) -> dict[str, Any]:
        """Read a prompt prefix into the KV without sampling (``Engine.prefill``)."""
        self.threads.before_request()
        try:
            return self.kv.prefill(tokens, cancel, chunk_tokens, yield_to)
        finally:
            self.kv.warm_spare()

    def _generate_tokens(self, prompt_tokens: list[int], params: SamplingParams,
                         cancel: threading.Event) -> Iterator[tuple[int, bytes]]:
        check_context(len(prompt_tokens), self.llm.n_ctx())  # stream_text checks first
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        # Our sampler, with a grammar and log-probabilities when asked (llamacpp_grammar.py).
        sample = make_sampler(self, params, seed, len(prompt_tokens))
        kv = self.kv
        logits = kv.load_prompt(prompt_tokens, cancel)  # resumes from the longest cached prefix
        if logits is None:
            return
        history = list(prompt_tokens)
        drafter = draft_len = None
        # Drafts are not checked against a grammar and carry no log-probabilities: drafting
        # is off while either is asked for (plain decoding is always correct).
        if self.speculative and not sample.exact_steps:
            drafter, draft_len = NGramDrafter(), DraftLength(self.draft_max)
            drafter.reset(history)
        tok = sample(logits, history)
        while True:
            if tok < 0 or cancel.is_set() or self._is_eog(tok) and (
                    not params.ignore_eos or sample.grammar is not None):
                return
            history.append(tok)
            yield tok, self._piece(tok), sample.last_logprobs
            # The KV cache must stay inside n_ctx: stop before llama.cpp would overflow.
            room = kv.n_ctx - kv.n_tokens - 1
            if cancel.is_set() or room <= 0:
                return
            draft: list[int] = []
            if drafter is not None and draft_len is not None:
                drafter.append(tok)
                if draft_len.ready():
                    draft = drafter.propose(min(draft_len.k, room - 1))
            if not draft:
                if drafter is not None:
                    self.spec_stats.plain_steps += 1
                logits = kv.decode([tok])
                tok = sample(logits, history)
                continue
            # One batch scores tok and the drafts; keep the drafts the target agrees with.
            base = kv.n_tokens + 1
            rows = kv.decode([tok] + draft, all_logits=True)
            accepted, nxt = verify(rows, draft, history, sample)
            if not params.ignore_eos:
                for i, d in enumerate(accepted):
                    if self._is_eog(d):
                        accepted, nxt = accepted[:i], d
                        break
            kv.truncate(base + len(accepted))  # the KV now holds exactly what is yielded
            self.spec_stats.record(len(draft), len(accepted))
            draft_len.update(len(draft), len(accepted))  # type: ignore[union-attr]
            for d in accepted:
                if cancel.is_set():
                    return
                history.append(d)
                drafter.append(d)  # type: ignore[union-attr]
                yield d, self._piece(d)
            tok = nxt
            if kv.n_tokens >= kv.n_ctx - 1:
                return

    def stream_chat(self, messages: list[dict[str, str]], images: Sequence[Any],
                    params: SamplingParams, cancel: threading.Event, usage: Usage
                    ) -> Iterator[str] | None:
        """Chats with images go through the projector's handler; text chats use the token
        pipeline (exact template, stop strings, context checks)."""
        if images and self.vision is not None:
            if params.grammar or params.logprobs or params.top_logprobs:
                raise ValueError("response_format, tools and logprobs are not available with "
                                 "images (the projector's handler samples by itself)")
            # The projector's handler drives the Llama object itself: keep the live text
            # sequence in the cache, and trust nothing in the KV before or after.
            self.kv.save_live()
            self.kv.forget()
            return self._then_forget(
                self.vision.stream_chat(messages, images, params, cancel, usage))
        return super().stream_chat(messages, images, params, cancel, usage)

    def _then_forget(self, it: Iterator[str]) -> Iterator[str]:
        try:
            yield from it
        finally:
            self.kv.forget()

    def close(self) -> None:
        kv = getattr(self, "kv", None)
        if kv is not None:
            kv.cache.clear()
            kv.close()
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None  # type: ignore[assignment]
