"""MiniCPM-V 2.6 / 4.x through llama.cpp: the language GGUF plus its vision projector (mmproj),
driven by llama-cpp-python's multimodal chat handler (``MiniCPMv26ChatHandler``, libmtmd).

The llama.cpp text backend owns the ``Llama``; this module adds the image path to it:

    vision = LlamaCppVision(backend.llm, resolved.mmproj)     # once, at load (checks the file)
    vision.stream_chat(messages, images, params, cancel, usage) -> Iterator[str]   # per request

Images are prepared by ``minicpm.images`` (decoded, oriented, scaled down) and passed as PNG
data URIs inside an OpenAI-style content list; matplotlib figures also get their text summary.
llama.cpp does its own slicing (MiniCPM-V 2.6's LLaVA-UHD variant) inside libmtmd.
MiniCPM-V 2.0 is not supported by llama.cpp (``clip.minicpmv_version`` 1): use the torch
engine for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, ImageError, ModelFileError, UnsupportedModelError
from ..sampling import SamplingParams
from .base import Usage

log = logging.getLogger("minicpm.llamacpp")

MAX_IMAGES = 8
# clip.minicpmv_version → model: what each projector file was converted from.
MINICPMV_VERSIONS = {2: "MiniCPM-Llama3-V 2.5", 3: "MiniCPM-V 2.6", 4: "MiniCPM-o 2.6",
                     5: "MiniCPM-V 4.0", 6: "MiniCPM-V 4.5"}


def check_mmproj(path: str | Path) -> dict[str, Any]:
    """Read an mmproj GGUF's header: refuse anything that is not a MiniCPM-V vision projector
    llama.cpp can run, naming the file and the reason. Returns the clip.* fields."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(p, "vision projector (mmproj) file not found")
    with p.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelFileError(p, "not a GGUF file (an mmproj must be GGUF)")
    try:
        from gguf import GGUFReader

        r = GGUFReader(str(p))
    except Exception as e:  # noqa: BLE001 - gguf raises assorted errors on bad files
        raise ModelFileError(p, f"cannot read the GGUF header ({e})") from e

    def field(name: str) -> Any:
        fld = r.fields.get(name)
        if fld is None:
            return None
        v = fld.contents()
        return v

    arch = field("general.architecture")
    if arch != "clip":
        raise UnsupportedModelError(p, f"general.architecture is {arch!r}, not 'clip': this is "
                                       "a language model, not a vision projector")
    version = field("clip.minicpmv_version")
    proj = field("clip.projector_type")
    if version is None and proj != "resampler":
        raise UnsupportedModelError(p, f"projector {proj!r} is not MiniCPM-V's resampler")
    if version is not None and int(version) < 2:
        raise UnsupportedModelError(p, "MiniCPM-V 2.0 (minicpmv_version 1) is not supported by "
                                       "llama.cpp; run MiniCPM-V-2 with the torch engine")
    return {"minicpmv_version": int(version) if version is not None else None,
            "model": MINICPMV_VERSIONS.get(int(version or 0), "MiniCPM-V"),
            "projector_type": proj,
            "image_size": field("clip.vision.image_size"),
            "embedding_length": field("clip.vision.embedding_length"),
            "block_count": field("clip.vision.block_count")}


IMAGE_TOKENS = ("<image>", "</image>", "<slice>", "</slice>")


def check_image_tokens(llm: Any, mmproj: str | Path) -> None:
    """libmtmd frames every picture with these tokens from the language model's vocabulary; a
    model without them gets token id -1 in its prompt and llama_decode fails with "all
    entries in the batch must have the same content types". Refuse that pairing up front."""
    missing = []
    for t in IMAGE_TOKENS:
        ids = llm.tokenize(t.encode(), add_bos=False, special=True)
        if len(ids) != 1:
            missing.append(t)
    if missing:
        raise ModelFileError(
            getattr(llm, "model_path", "the language model"),
            f"its vocabulary has no {', '.join(missing)} token(s), which the MiniCPM-V "
            f"projector {Path(mmproj).name} needs; is this the MiniCPM-V language model that "
            "goes with it?")


def build_messages(messages: Sequence[dict[str, str]], images: Sequence[Any]
                   ) -> list[dict[str, Any]]:
    """OpenAI-style messages for the handler: the images (PNG data URIs) and figure summaries
    go into the last user message, images first, as MiniCPM-V's own chat puts them."""
    from ..figures import is_figure, summarize_figure
    from ..images import to_data_uri

    if len(images) > MAX_IMAGES:
        raise ImageError(f"{len(images)} images in one request; at most {MAX_IMAGES}")
    uris, notes = [], []
    for i, im in enumerate(images):
        try:
            uris.append(to_data_uri(im, "png"))
        except ImageError as e:
            raise ImageError(f"image {i + 1}: {e}") from e
        if is_figure(im):
            notes.append(f"Figure data (read from the plot objects):\n{summarize_figure(im)}\n\n")
    out: list[dict[str, Any]] = [dict(m) for m in messages]
    last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    if last is None:
        raise ValueError("images need a user message to go with")
    out[last]["content"] = ([{"type": "image_url", "image_url": {"url": u}} for u in uris]
                            + [{"type": "text", "text": "".join(notes) + out[last]["content"]}])
    return out


class LlamaCppVision:
    """The image path of a llama.cpp backend that was loaded with an mmproj."""

    def __init__(self, llm: Any, mmproj: str | Path, verbose: bool = False):
        from llama_cpp.llama_chat_format import MiniCPMv26ChatHandler

        self.info = check_mmproj(mmproj)
        self.mmproj = Path(mmproj)
        self.llm = llm
        check_image_tokens(llm, mmproj)
        try:
            self.handler = MiniCPMv26ChatHandler(clip_model_path=str(mmproj), verbose=verbose)
            # Load the projector now (the handler would on the first image): a projector that
            # does not fit the language model (n_embd mismatch, wrong file) fails at load time.
            self.handler._init_mtmd_context(llm)
        except (ValueError, OSError) as e:
            raise ModelFileError(mmproj, f"llama.cpp cannot use this projector with "
                                         f"{getattr(llm, 'model_path', 'the model')} ({e})") from e

    def stream_chat(self, messages: Sequence[dict[str, str]], images: Sequence[Any],
                    params: SamplingParams, cancel: threading.Event, usage: Usage
                    ) -> Iterator[str]:
        """Text deltas of the reply. The handler encodes the images and evaluates the whole
        prompt when called; that happens on the first ``next()``, so time-to-first-token
        includes image encoding."""
        msgs = build_messages(messages, images)  # errors surface before any work
        return self._run(msgs, params, cancel, usage)

    def _run(self, msgs: list[dict[str, Any]], params: SamplingParams, cancel: threading.Event,
             usage: Usage) -> Iterator[str]:
        start = time.perf_counter()
        try:
            stream = self.handler(
                llama=self.llm, messages=msgs, stream=True,
                temperature=0.0 if params.greedy else float(params.temperature),
                top_p=float(params.top_p), top_k=int(params.top_k), min_p=0.0, typical_p=1.0,
                repeat_penalty=float(params.repetition_penalty),
                max_tokens=int(params.max_tokens), seed=params.seed,
                stop=list(params.stop) or None)
        except ValueError as e:  # "Prompt exceeds n_ctx", "Failed to load mtmd context", …
            msg = str(e)
            if "n_ctx" in msg:
                from ..errors import ContextOverflowError

                raise ContextOverflowError(self.llm.n_tokens, self.llm.n_ctx()) from e
            raise ImageError(f"llama.cpp could not take the image(s): {msg}") from e
        except RuntimeError as e:  # llama_decode failed inside the handler's prompt evaluation
            raise BackendUnavailableError(
                f"llama.cpp failed while evaluating the image prompt ({e})") from e
        usage.prompt_tokens = int(self.llm.n_tokens)
        usage.finish_reason = "stop"
        first_at: float | None = None
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                if text:
                    now = time.perf_counter()
                    if first_at is None:
                        first_at = now
                        usage.time_to_first_token = usage.prefill_seconds = now - start
                    usage.completion_tokens += 1  # one chunk per token in llama-cpp-python
                    usage.decode_seconds = now - first_at
                    yield text.lstrip() if usage.completion_tokens == 1 else text
                if choice.get("finish_reason"):
                    usage.finish_reason = choice["finish_reason"]
                if cancel.is_set():
                    usage.finish_reason = "cancelled"
                    break
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()

    def close(self) -> None:
        """Nothing to do: the handler registered the mtmd context's release on the Llama, so
        closing the text backend's Llama frees the projector too."""
