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
from ..errors import MiniCPMError, ModelFileError
from ..gguf_check import read_gguf
from ..sampling import SamplingParams
from .base import Backend, EngineInfo, Usage

log = logging.getLogger("minicpm.llamacpp")

DEFAULT_N_CTX = 4096


def physical_cores() -> int:
    """llama.cpp decodes fastest with one thread per physical core (hyper-threads only contend)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency
        n = None
    import os

    return max(1, n or os.cpu_count() or 1)


class LlamaCppBackend(Backend):
    name = "llama.cpp"

    def __init__(self, resolved: ResolvedModel, n_ctx: int | None = None,
                 n_threads: int | None = None, n_batch: int = 512, repair_mup: bool = True,
                 verbose: bool = False, mmproj: str | None = None, **ignored: Any):
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
        threads = n_threads or physical_cores()
        ctx = int(n_ctx or min(summary.context_length, DEFAULT_N_CTX))
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(resolved.path), n_ctx=ctx, n_threads=threads,
                n_threads_batch=threads, n_batch=min(n_batch, ctx), use_mmap=True,
                verbose=verbose, kv_overrides=overrides or None)
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelFileError(resolved.path, f"llama.cpp could not load it ({e})") from e
        self._lib = llama_cpp
        self._vocab = self.llm._model.vocab
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
            extra={"n_threads": threads, "n_ctx_train": summary.context_length,
                   "mup_repaired": sorted(overrides), "file_size": summary.file_size},
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

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        # special=True: the template's turn markers (<用户>, <|im_start|>) are real tokens.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def generate_tokens(self, prompt_tokens: list[int], params: SamplingParams,
                        cancel: threading.Event) -> Iterator[tuple[int, bytes]]:
        if len(prompt_tokens) >= self.llm.n_ctx():
            raise MiniCPMError("prompt does not fit the context")  # stream_text checks first
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        self.llm.set_seed(seed)
        gen = self.llm.generate(
            prompt_tokens,
            temp=0.0 if params.greedy else float(params.temperature),
            top_k=int(params.top_k), top_p=float(params.top_p), min_p=0.0, typical_p=1.0,
            repeat_penalty=float(params.repetition_penalty), reset=True)
        try:
            for tok in gen:
                if cancel.is_set():
                    return
                if not params.ignore_eos and self._lib.llama_vocab_is_eog(self._vocab, tok):
                    return
                yield tok, self._piece(tok)
                # The KV cache must stay inside n_ctx: stop before llama.cpp would overflow.
                if self.llm.n_tokens >= self.llm.n_ctx():
                    return
        finally:
            gen.close()

    def stream_chat(self, messages: list[dict[str, str]], images: Sequence[Any],
                    params: SamplingParams, cancel: threading.Event, usage: Usage
                    ) -> Iterator[str] | None:
        """Chats with images go through the projector's handler; text chats use the token
        pipeline (exact template, stop strings, context checks)."""
        if images and self.vision is not None:
            return self.vision.stream_chat(messages, images, params, cancel, usage)
        return super().stream_chat(messages, images, params, cancel, usage)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None  # type: ignore[assignment]
