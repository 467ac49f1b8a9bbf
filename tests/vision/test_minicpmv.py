"""A tiny random MiniCPM-V 2.0 end to end: folder loading, the token layout of an image
prompt, image features spliced into the input, and greedy answers vs a float64 reference of
the language model fed the same features."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minicpm.api import Engine  # noqa: E402
from minicpm.catalogue import ResolvedModel  # noqa: E402
from minicpm.errors import ImageError, UnsupportedModelError  # noqa: E402
from minicpm.testing import forward, greedy  # noqa: E402
from minicpm.vision.backend import TorchVisionBackend  # noqa: E402
from minicpm.vision.model import is_minicpmv_folder, load_minicpmv  # noqa: E402


@pytest.fixture(scope="module")
def backend(tiny_v):
    folder = tiny_v[0]
    return TorchVisionBackend(ResolvedModel(folder, "hf", "MiniCPM-V-tiny"))


def _image(w: int = 112, h: int = 84, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_folder_detection_and_loading(tiny_v):
    folder = tiny_v[0]
    assert is_minicpmv_folder(folder) and not is_minicpmv_folder(folder.parent)
    model, raw = load_minicpmv(folder)
    assert len(model.vpm.blocks) == 2  # 3 stored, the last dropped
    assert model.vcfg.query_num == 16 and raw["model_type"] == "minicpmv"
    from minicpm.torch import loader

    with pytest.raises(UnsupportedModelError):  # the text loader refuses it: routing needed
        loader.plan(folder)


def test_prompt_layout(backend):
    img = _image()
    ids, _ = backend.prepare([{"role": "user", "content": "what is this"}], [img])
    lay = backend.model.layout(img.size)
    assert lay.grid == (2, 2)  # 112×84 at scale 56: 3 tiles worth, 2×2 fits 4:3 best
    o = backend.ids_of
    assert ids[0] == backend.tok.bos_id
    assert ids.count(o["<image>"]) == ids.count(o["</image>"]) == lay.num_images == 5
    assert ids.count(o["<slice>"]) == ids.count(o["</slice>"]) == 1
    assert ids.count(o["<unk>"]) == 5 * backend.model.vcfg.query_num
    first = ids.index(o["<image>"])
    assert ids[first + 1:first + 17] == [o["<unk>"]] * 16 and ids[first + 17] == o["</image>"]
    assert ids[first + 18] == o["<slice>"]
    assert backend.tok.piece(ids[1]) == "<用户>" and backend.tok.piece(ids[-1]) == "<AI>"
    assert backend.tok.decode(ids).endswith("\nwhat is this")
    assert ids.count(backend.tok.encode("\n", add_bos=False)[-1]) >= 2  # row break + text


def test_features_land_on_the_placeholders(backend):
    m = backend.model
    img = _image()
    ids, _ = backend.prepare([{"role": "user", "content": "hi"}], [img])
    lay, feats = m.encode_image(img)
    assert feats.shape == (5, 16, 64) and lay.num_images == 5
    t = torch.tensor(ids)
    emb = m.embed(t, feats, backend.ids_of["<image>"], backend.ids_of["</image>"])[0]
    unk = (t == backend.ids_of["<unk>"]).nonzero().flatten()
    torch.testing.assert_close(emb[unk], feats.reshape(-1, 64))
    text = (t != backend.ids_of["<unk>"]).nonzero().flatten()
    torch.testing.assert_close(emb[text], m.llm.embed(t[text].view(1, -1))[0])  # μP-scaled
    with pytest.raises(ValueError):
        m.embed(t, feats[:2], backend.ids_of["<image>"], backend.ids_of["</image>"])


def _reference_greedy(cfg, text_w, ids, feats, n):
    """float64: the image features become extra embedding rows (divided by scale_emb, so
    the reference's own scaling restores them); logits over the real vocabulary only."""
    f = feats.reshape(-1, feats.shape[-1]).double().numpy()
    w = dict(text_w)
    v = cfg.vocab_size
    w["model.embed_tokens.weight"] = np.concatenate(
        [text_w["model.embed_tokens.weight"].astype(np.float64), f / cfg.embedding_scale])
    seq = list(ids)
    unk_pos = [i for i, t in enumerate(seq) if t == 0]
    for j, p in enumerate(unk_pos):
        seq[p] = v + j
    out = []
    first = None
    for _ in range(n):
        logits = forward(cfg, w, seq)[-1][:v]
        first = logits if first is None else first
        nxt = int(np.argmax(logits))
        out.append(nxt)
        seq.append(nxt)
    return out, first


def test_end_to_end_greedy_matches_reference(backend, tiny_v):
    _, cfg, weights = tiny_v
    img = _image(seed=3)
    eng = Engine(backend)
    msgs = [{"role": "user", "content": "what is this"}]
    gen = eng.chat(msgs, images=[img], temperature=0, max_tokens=5)
    text = gen.read()
    assert gen.usage.prompt_tokens > 4 * 16 and gen.usage.completion_tokens >= 1
    assert gen.usage.time_to_first_token is not None
    ids, prefill = backend.prepare(msgs, [img])
    _, feats = backend.model.encode_image(img)
    ref_ids, ref_first = _reference_greedy(cfg, weights["text"], ids, feats, 5)
    got_first = prefill().double().numpy()
    assert np.linalg.norm(got_first - ref_first) / np.linalg.norm(ref_first) < 1e-4
    # the engine's greedy tokens == the reference's, up to EOS
    eos = backend.tok.eos_ids
    expect = []
    for t in ref_ids:
        if t in eos:
            break
        expect.append(t)
    assert text == backend.tok.decode(expect).lstrip()


def _text_reference(backend, cfg, text_w, ids, n):
    """The reply text a greedy run of the float64 reference gives for prompt ids (EOS ends
    it; leading space dropped, as the chat pipeline does)."""
    out = []
    for t in greedy(cfg, text_w, ids, n):
        if t in backend.tok.eos_ids:
            break
        out.append(t)
    return b"".join(backend.tok.token_bytes(t) for t in out).decode("utf-8", "replace").lstrip()


def test_image_changes_the_answer_and_text_only_still_works(backend, tiny_v):
    _, cfg, weights = tiny_v
    ids, p1 = backend.prepare([{"role": "user", "content": "hi"}], [_image(seed=1)])
    _, p2 = backend.prepare([{"role": "user", "content": "hi"}], [_image(seed=2)])
    assert not torch.allclose(p1(), p2())
    eng = Engine(backend)
    msgs = [{"role": "user", "content": "hello"}]
    gen = eng.chat(msgs, temperature=0, max_tokens=3)
    out = gen.read()
    # text only: MiniCPM-2B's own pipeline, no image tokens, the reference's greedy answer
    prompt = backend.tokenize(eng.render(msgs), add_bos=True)
    assert gen.usage.prompt_tokens == len(prompt) and backend.ids_of["<unk>"] not in prompt
    assert out == _text_reference(backend, cfg, weights["text"], prompt,
                                  gen.usage.completion_tokens)


def test_figure_gets_pixels_and_summary(backend):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=40)
    ax.plot([1, 2, 3], [1, 4, 9], label="squares")
    ax.set_title("growth")
    ids, _ = backend.prepare([{"role": "user", "content": "explain"}], [fig])
    text = backend.tok.decode(ids)
    assert "Figure data" in text and "growth" in text and "rising" in text
    plt.close(fig)


def test_bad_images_are_refused(backend):
    eng = Engine(backend)
    with pytest.raises(ImageError, match="image 1"):
        eng.chat([{"role": "user", "content": "x"}], images=[b"not an image"]).read()
    with pytest.raises(ImageError, match="at most"):
        eng.chat([{"role": "user", "content": "x"}], images=[_image()] * 9).read()


def test_cancel_stops(backend):
    """EOS ignored, so only the cancel can end this before 50 tokens."""
    eng = Engine(backend)
    gen = eng.chat([{"role": "user", "content": "x"}], images=[_image()], max_tokens=50,
                   temperature=0.8, seed=1, ignore_eos=True)
    it = iter(gen)
    next(it)  # the first text delta arrives
    at_cancel = gen.usage.completion_tokens
    gen.cancel()
    rest = list(it)
    assert gen.usage.finish_reason == "cancelled"
    assert gen.usage.completion_tokens <= at_cancel + 1 < 50
    assert len(rest) <= 2  # at most the token in flight and the UTF-8 tail


def test_int8_language_model(backend, tiny_v):
    """int8 weight-only LLM: the image prompt's first logits stay within int8's error of the
    float32 model's (and do move: the layers really were swapped), and it answers."""
    b = TorchVisionBackend(ResolvedModel(tiny_v[0], "hf", "MiniCPM-V-tiny"), quant="int8")
    assert b.info.extra["quantized_layers"] > 0 and "int8" in b.info.quantization
    msgs, img = [{"role": "user", "content": "hi"}], _image()
    q = b.prepare(msgs, [img])[1]().double()
    f = backend.prepare(msgs, [img])[1]().double()
    rel = float((q - f).abs().max() / f.abs().max())
    assert 0 < rel < 0.05
    gen = Engine(b).chat(msgs, images=[img], temperature=0, max_tokens=3, ignore_eos=True)
    out = gen.read()
    assert gen.usage.completion_tokens == 3 and gen.usage.finish_reason == "length" and out
    with pytest.raises(ValueError):
        TorchVisionBackend(ResolvedModel(tiny_v[0], "hf", "x"), quant="int3")


def test_placeholders_with_a_sentencepiece_tokenizer(tmp_path):
    """MiniCPM-V 2.0 ships tokenizer.model with the image markers as user-defined pieces:
    the prompt is encoded in runs between <unk>s and the markers stay single tokens."""
    from minicpm.testing.spm import write_sentencepiece
    from minicpm.torch.tokenizer import Tokenizer
    from minicpm.vision import slicing
    from minicpm.vision.model import special_ids, tokenize_with_images

    write_sentencepiece(tmp_path, 320, user_defined=["<用户>", "<AI>", "<image>", "</image>",
                                                     "<slice>", "</slice>"],
                        words="what is in this picture the plot shows a line".split())
    tok = Tokenizer(tmp_path)
    ids_of = special_ids(tok, tmp_path)
    lay = slicing.layout((1000, 600))
    text = "<用户>" + slicing.placeholder(lay, 4) + "\nwhat is in this picture<AI>"
    ids = tokenize_with_images(tok, text, ids_of)
    assert ids[0] == tok.bos_id
    assert ids.count(ids_of["<image>"]) == ids.count(ids_of["</image>"]) == 3
    assert ids.count(ids_of["<slice>"]) == ids.count(ids_of["</slice>"]) == 1
    assert ids.count(ids_of["<unk>"]) == 12
    first = ids.index(ids_of["<image>"])
    assert ids[first + 1:first + 5] == [ids_of["<unk>"]] * 4
    # the run-wise path was taken: SentencePiece itself keeps the markers whole
    run = tok.encode("</image><slice><image>", add_bos=False)
    assert [ids_of[m] for m in ("</image>", "<slice>", "<image>")] == [t for t in run
                                                                      if t in ids_of.values()]


def test_load_routes_a_minicpmv_folder_to_the_vision_backend(backend, tiny_v):
    """``minicpm.load(folder)`` picks the vision backend by config.json, and answers as the
    directly built backend does."""
    import minicpm

    eng = minicpm.load(tiny_v[0], device="cpu")
    try:
        assert isinstance(eng.backend, TorchVisionBackend) and eng.info.vision
        msgs = [{"role": "user", "content": "what is this"}]
        img = _image(seed=4)
        got = eng.chat(msgs, images=[img], temperature=0, max_tokens=4).read()
        assert got == Engine(backend).chat(msgs, images=[img], temperature=0, max_tokens=4).read()
    finally:
        eng.close()
