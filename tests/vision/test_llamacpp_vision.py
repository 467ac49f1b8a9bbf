"""The llama.cpp image path: mmproj checks, the messages handed to MiniCPMv26ChatHandler, the
streaming plumbing, and a tiny MiniCPM-V 2.6-style mmproj GGUF written here and loaded by
llama.cpp's libmtmd against a tiny text GGUF."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from minicpm.backends.base import Usage
from minicpm.backends.llamacpp_vision import (
    LlamaCppVision,
    build_messages,
    check_mmproj,
)
from minicpm.errors import ImageError, ModelFileError, UnsupportedModelError
from minicpm.sampling import SamplingParams

gguf = pytest.importorskip("gguf")


def write_tiny_mmproj(path: Path, n_embd_text: int = 128, version: int = 3,
                      arch: str = "clip") -> Path:
    """A MiniCPM-V 2.6-layout vision projector (SigLIP "v.*" + "resampler.*"), tiny: 2 blocks
    of width 32, 28-px images, 70×70 position buckets as the navit SigLIP has."""
    rng = np.random.default_rng(0)

    def w(*s: int, sc: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(s) * sc).astype(np.float32)

    d, ff, n_layers, heads, img, p, e = 32, 64, 2, 2, 28, 14, n_embd_text
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_bool("clip.has_text_encoder", False)
    wr.add_bool("clip.has_vision_encoder", True)
    wr.add_bool("clip.has_minicpmv_projector", True)
    wr.add_int32("clip.minicpmv_version", version)
    wr.add_string("clip.projector_type", "resampler")
    for k, v in {"image_size": img, "patch_size": p, "embedding_length": d,
                 "feed_forward_length": ff, "projection_dim": e, "attention.head_count": heads,
                 "block_count": n_layers}.items():
        wr.add_uint32(f"clip.vision.{k}", v)
    wr.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    wr.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    wr.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    wr.add_bool("clip.use_gelu", True)
    t = {"v.patch_embd.weight": w(d, 3, p, p), "v.patch_embd.bias": w(d),
         "v.position_embd.weight": w(4900, d), "v.post_ln.weight": 1 + w(d),
         "v.post_ln.bias": w(d), "resampler.pos_embed_k": w(4900, e),
         "resampler.query": w(64, e, sc=0.5), "resampler.proj.weight": w(e, e),
         "resampler.kv.weight": w(e, d)}
    for i in range(n_layers):
        b = f"v.blk.{i}."
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t[b + n + ".weight"], t[b + n + ".bias"] = w(d, d), w(d)
        for n in ("ln1", "ln2"):
            t[b + n + ".weight"], t[b + n + ".bias"] = 1 + w(d), w(d)
        t[b + "ffn_up.weight"], t[b + "ffn_up.bias"] = w(ff, d), w(ff)
        t[b + "ffn_down.weight"], t[b + "ffn_down.bias"] = w(d, ff), w(d)
    for n in ("q", "k", "v", "out"):
        t[f"resampler.attn.{n}.weight"], t[f"resampler.attn.{n}.bias"] = w(e, e), w(e)
    for n in ("ln_q", "ln_kv", "ln_post"):
        t[f"resampler.{n}.weight"], t[f"resampler.{n}.bias"] = 1 + w(e), w(e)
    for k, v in t.items():
        wr.add_tensor(k, v)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def write_tiny_text(path: Path, hidden: int = 128, image_tokens: bool = True) -> Path:
    """A tiny MiniCPM text GGUF; with ``image_tokens`` its vocabulary has <image>, </image>,
    <slice>, </slice> (user-defined pieces), which libmtmd frames every picture with."""
    from minicpm.testing import TinyConfig, random_weights, tiny_vocab, write_gguf
    from minicpm.testing.tiny_tokenizer import USER_DEFINED

    cfg = TinyConfig(hidden_size=hidden, intermediate_size=128, max_position_embeddings=2048)
    vocab = tiny_vocab(cfg.vocab_size)
    if image_tokens:
        for tok in ("<image>", "</image>", "<slice>", "</slice>"):
            k = vocab.pieces.index(next(p for p in vocab.pieces if p.startswith("<unused")))
            vocab.pieces[k], vocab.types[k], vocab.scores[k] = tok, USER_DEFINED, 0.0
    return write_gguf(cfg, random_weights(cfg), path, vocab=vocab)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mmproj")
    return {"mmproj": write_tiny_mmproj(d / "mmproj-tiny.gguf"),
            "text128": write_tiny_text(d / "text128.gguf", 128),
            "text64": write_tiny_text(d / "text64.gguf", 64),
            "plain": write_tiny_text(d / "plain128.gguf", 128, image_tokens=False),
            "v1": write_tiny_mmproj(d / "mmproj-v1.gguf", version=1),
            "notclip": write_tiny_mmproj(d / "not-clip.gguf", arch="llama"), "dir": d}


def test_check_mmproj(files, tmp_path):
    info = check_mmproj(files["mmproj"])
    assert info["minicpmv_version"] == 3 and info["model"] == "MiniCPM-V 2.6"
    with pytest.raises(UnsupportedModelError, match="MiniCPM-V 2.0"):
        check_mmproj(files["v1"])
    with pytest.raises(UnsupportedModelError, match="not 'clip'"):
        check_mmproj(files["notclip"])
    with pytest.raises(ModelFileError, match="not found"):
        check_mmproj(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        check_mmproj(bad)


def test_build_messages_puts_data_uris_in_the_last_user_turn():
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(2, 2), dpi=30)
    ax.bar(["a", "b"], [1, 3])
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "old"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "explain"}]
    out = build_messages(msgs, [Image.new("RGB", (8, 8)), fig])
    assert out[1]["content"] == "old"
    parts = out[3]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    uri = parts[0]["image_url"]["url"]
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "bar chart: 2 bars: a=1, b=3" in parts[2]["text"] and parts[2]["text"].endswith("explain")
    with pytest.raises(ImageError, match="image 1"):
        build_messages(msgs, [b"garbage"])
    plt.close(fig)


class _FakeHandler:
    """Stands in for MiniCPMv26ChatHandler: records the call, streams OpenAI-shaped chunks."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces
        self.kwargs: dict = {}

    def __call__(self, **kw):
        self.kwargs = kw
        kw["llama"].n_tokens = 77

        def gen():
            for p in self.pieces:
                yield {"choices": [{"delta": {"content": p}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "length"}]}
        return gen()


class _FakeLlama:
    n_tokens = 0

    def n_ctx(self) -> int:
        return 512


def _vision_with(handler: _FakeHandler) -> LlamaCppVision:
    v = LlamaCppVision.__new__(LlamaCppVision)  # skip loading: plumbing only
    v.llm, v.handler, v.info = _FakeLlama(), handler, {}
    return v


def test_stream_chat_plumbing():
    from PIL import Image

    h = _FakeHandler([" Hello", ",", " world"])
    usage = Usage()
    out = list(_vision_with(h).stream_chat([{"role": "user", "content": "hi"}],
                                           [Image.new("RGB", (4, 4))],
                                           SamplingParams(temperature=0, max_tokens=3, seed=5),
                                           threading.Event(), usage))
    assert "".join(out) == "Hello, world"
    assert h.kwargs["temperature"] == 0.0 and h.kwargs["max_tokens"] == 3 and h.kwargs["stream"]
    assert h.kwargs["seed"] == 5 and h.kwargs["min_p"] == 0.0
    assert usage.prompt_tokens == 77 and usage.completion_tokens == 3
    assert usage.finish_reason == "length" and usage.time_to_first_token is not None


def test_stream_chat_cancel():
    from PIL import Image

    cancel = threading.Event()
    usage = Usage()
    it = _vision_with(_FakeHandler(["a", "b", "c", "d"])).stream_chat(
        [{"role": "user", "content": "hi"}], [Image.new("RGB", (4, 4))],
        SamplingParams(), cancel, usage)
    assert next(it) == "a"
    cancel.set()
    assert list(it) == [] and usage.finish_reason == "cancelled"


# --- real llama.cpp: in a subprocess, so that a native abort cannot take pytest down --------
def _run(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def test_llama_cpp_loads_the_tiny_projector(files):
    pytest.importorskip("llama_cpp")
    r = _run(f"""
        import llama_cpp
        from minicpm.backends.llamacpp_vision import LlamaCppVision
        from minicpm.errors import ModelFileError
        llm = llama_cpp.Llama({str(files["text128"])!r}, n_ctx=1024, n_threads=1, verbose=False)
        v = LlamaCppVision(llm, {str(files["mmproj"])!r})
        print("LOADED", v.info["model"], v.handler.mtmd_ctx is not None)
        small = llama_cpp.Llama({str(files["text64"])!r}, n_ctx=256, n_threads=1, verbose=False)
        try:
            LlamaCppVision(small, {str(files["mmproj"])!r})
        except ModelFileError as e:
            print("REFUSED", e)
        plain = llama_cpp.Llama({str(files["plain"])!r}, n_ctx=256, n_threads=1, verbose=False)
        try:
            LlamaCppVision(plain, {str(files["mmproj"])!r})
        except ModelFileError as e:
            print("NOTOKENS", e)
    """)
    assert "LOADED MiniCPM-V 2.6 True" in r.stdout, r.stderr[-2000:]
    assert "REFUSED" in r.stdout and "mmproj-tiny.gguf" in r.stdout
    assert "NOTOKENS" in r.stdout and "no <image>, </image>, <slice>, </slice>" in r.stdout


def test_llama_cpp_answers_with_an_image(files):
    """End to end through libmtmd: slicing (60×40 at 28-px tiles → overview + 2×2 slices),
    the tiny SigLIP and resampler, image embeddings into the tiny MiniCPM, greedy decoding
    (deterministic: the same image twice gives the same answer)."""
    pytest.importorskip("llama_cpp")
    r = _run(f"""
        import threading, llama_cpp
        from PIL import Image
        from minicpm.backends.base import Usage
        from minicpm.backends.llamacpp_vision import LlamaCppVision
        from minicpm.sampling import SamplingParams
        llm = llama_cpp.Llama({str(files["text128"])!r}, n_ctx=1024, n_threads=1, verbose=False)
        v = LlamaCppVision(llm, {str(files["mmproj"])!r})
        def ask(color):
            u = Usage()
            out = "".join(v.stream_chat([{{"role": "user", "content": "what"}}],
                                        [Image.new("RGB", (60, 40), color)],
                                        SamplingParams(temperature=0, max_tokens=3),
                                        threading.Event(), u))
            return out, u
        a1, u1 = ask((200, 30, 30))
        a2, u2 = ask((200, 30, 30))
        print("ANSWER", repr(a1), repr(a2), u1.prompt_tokens, u1.completion_tokens,
              u1.time_to_first_token is not None, u1.finish_reason)
    """)
    assert "ANSWER" in r.stdout, r.stderr[-3000:]
    line = r.stdout.split("ANSWER", 1)[1].split()
    a1, a2 = line[0], line[1]
    assert a1 == a2  # greedy: the same image gives the same answer
    n_prompt, n_out = int(line[2]), int(line[3])
    assert n_prompt > 5 * 64  # five pictures (overview + 2×2 slices) × 64 queries + text
    assert 1 <= n_out <= 3 and line[4] == "True"


def test_load_routes_images_through_the_projector(files, tmp_path):
    """``minicpm.load`` on a GGUF with an mmproj beside it: the engine says it can see, an image
    chat goes through libmtmd, a text chat keeps the exact-template token pipeline, and the
    same GGUF without a projector refuses images with a clear message."""
    pytest.importorskip("llama_cpp")
    import shutil

    folder = tmp_path / "v26"
    folder.mkdir()
    shutil.copy(files["text128"], folder / "model.gguf")
    shutil.copy(files["mmproj"], folder / "mmproj-model-f16.gguf")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(files["text128"], alone / "model.gguf")
    mismatched = tmp_path / "mismatched"  # a projector for another model lies beside it
    mismatched.mkdir()
    shutil.copy(files["text64"], mismatched / "model.gguf")
    shutil.copy(files["mmproj"], mismatched / "mmproj-other.gguf")
    r = _run(f"""
        import minicpm
        from PIL import Image
        from minicpm.errors import ImageError
        eng = minicpm.load({str(folder / "model.gguf")!r}, n_ctx=1024, n_threads=1)
        print("VISION", eng.info.vision, eng.info.extra["mmproj"].endswith("mmproj-model-f16.gguf"))
        g = eng.chat([{{"role": "user", "content": "what"}}], [Image.new("RGB", (60, 40), "red")],
                     temperature=0, max_tokens=3)
        text = g.read()
        print("IMAGE", g.usage.prompt_tokens, g.usage.completion_tokens)
        g = eng.chat([{{"role": "user", "content": "hi"}}], temperature=0, max_tokens=3)
        g.read()
        print("TEXT", g.usage.prompt_tokens)
        eng.close()
        plain = minicpm.load({str(alone / "model.gguf")!r}, n_ctx=256, n_threads=1)
        try:
            plain.chat([{{"role": "user", "content": "what"}}], [Image.new("RGB", (8, 8))]).read()
        except ImageError as e:
            print("REFUSED", plain.info.vision, e)
        other = minicpm.load({str(mismatched / "model.gguf")!r}, n_ctx=256, n_threads=1)
        print("SKIPPED", other.info.vision, "mmproj_skipped" in other.info.extra)
        try:
            minicpm.load({str(mismatched / "model.gguf")!r}, n_ctx=256, n_threads=1,
                         mmproj={str(mismatched / "mmproj-other.gguf")!r})
        except minicpm.ModelFileError as e:
            print("EXPLICIT", e)
    """)
    assert "VISION True True" in r.stdout, r.stderr[-3000:]
    assert "IMAGE" in r.stdout, r.stdout + r.stderr[-3000:]
    image = r.stdout.split("IMAGE", 1)[1].split()
    assert int(image[0]) > 5 * 64 and 1 <= int(image[1]) <= 3
    assert int(r.stdout.split("TEXT", 1)[1].split()[0]) < 20  # no image tokens in a text chat
    assert "REFUSED False" in r.stdout and "cannot see images" in r.stdout
    assert "SKIPPED False True" in r.stdout  # an unrelated projector does not break loading
    assert "EXPLICIT" in r.stdout and "mmproj-other.gguf" in r.stdout  # a named one must fit
