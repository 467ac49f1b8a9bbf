"""A MiniCPM GGUF without the μP keys (minicpm.embedding_scale / residual_scale / logit_scale):
raw llama.cpp runs it silently wrong (its fallback logit scale is 256/hidden, the inverse of
hidden/dim_model_base), and our engine either repairs it with MiniCPM's published constants
(and warns) or refuses it with ModelFileError. The tiny model uses exactly those constants
(scale_emb 12, scale_depth 1.4, dim_model_base 256), so the repair is the right answer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from minicpm.testing import (
    PUBLISHED_DIM_MODEL_BASE,
    PUBLISHED_SCALE_DEPTH,
    PUBLISHED_SCALE_EMB,
    forward,
    hf_tokenizer,
    rel_error,
    tiny_vocab,
)

llama_cpp = pytest.importorskip("llama_cpp")

PUBLISHED = {"scale_emb": PUBLISHED_SCALE_EMB, "scale_depth": PUBLISHED_SCALE_DEPTH,
             "dim_model_base": PUBLISHED_DIM_MODEL_BASE}
# all three missing (old converters), or just logit_scale (the one whose fallback is wrong)
MISSING = {"all": False, "logit_scale": ("embedding_scale", "residual_scale")}


def _ids(cfg: Any) -> list[int]:
    tok = hf_tokenizer(tiny_vocab(cfg.vocab_size))
    text = "the model is not what it is"
    return [tok.token_to_id("<s>"), *tok.encode(text, add_special_tokens=False).ids]


def _raw_logits(path: Any, ids: list[int]) -> np.ndarray:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, logits_all=True,
                          verbose=False)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


@pytest.mark.parametrize("missing", list(MISSING))
def test_raw_llamacpp_inverts_the_logit_scale(tiny_gguf: Any, missing: str) -> None:
    m = tiny_gguf("dense_tied", mup_keys=MISSING[missing], **PUBLISHED)
    ids = _ids(m.cfg)
    ref = forward(m.cfg, m.weights, ids)
    raw = _raw_logits(m.path, ids)
    assert rel_error(raw, ref) > 0.5  # plainly wrong...
    # ...in exactly this way: divided by 256/hidden instead of hidden/256.
    inverted = (m.cfg.hidden_size / PUBLISHED_DIM_MODEL_BASE) ** 2
    assert rel_error(raw, ref * inverted) < 1e-3


def test_complete_file_needs_no_repair(tiny_gguf: Any, caplog: pytest.LogCaptureFixture) -> None:
    import minicpm

    m = tiny_gguf("dense_tied", **PUBLISHED)
    ids = _ids(m.cfg)
    assert rel_error(_raw_logits(m.path, ids), forward(m.cfg, m.weights, ids)) < 1e-3
    with caplog.at_level(logging.WARNING), \
            minicpm.load(str(m.path), n_ctx=64, n_threads=2, repair_mup=False) as engine:
        assert engine.info.extra.get("mup_repaired", []) == []
    assert "minicpm.logit_scale" not in caplog.text


@pytest.mark.parametrize("missing", list(MISSING))
def test_engine_repairs_and_warns(tiny_gguf: Any, missing: str,
                                  caplog: pytest.LogCaptureFixture) -> None:
    import minicpm

    m = tiny_gguf("dense_tied", mup_keys=MISSING[missing], **PUBLISHED)
    ids = _ids(m.cfg)
    with caplog.at_level(logging.WARNING), \
            minicpm.load(str(m.path), n_ctx=64, n_threads=2) as engine:
        assert "minicpm.logit_scale" in engine.info.extra["mup_repaired"]
        llm = engine.backend.llm  # the engine's own context, with its kv_overrides
        llm.reset()
        llm.eval(ids)
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                     shape=(llm.n_vocab(),)).astype(np.float64)
    assert "minicpm.logit_scale" in caplog.text
    assert rel_error(last, forward(m.cfg, m.weights, ids)[-1]) < 1e-3


@pytest.mark.parametrize("missing", list(MISSING))
def test_engine_refuses_when_repair_is_off(tiny_gguf: Any, missing: str) -> None:
    import minicpm
    from minicpm.errors import ModelFileError

    m = tiny_gguf("dense_tied", mup_keys=MISSING[missing], **PUBLISHED)
    with pytest.raises(ModelFileError) as info:
        minicpm.load(str(m.path), n_ctx=64, n_threads=2, repair_mup=False)
    msg = str(info.value)
    assert "minicpm.logit_scale" in msg and str(m.path) in msg
