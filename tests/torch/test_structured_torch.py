"""The torch backend refuses constrained output and logprobs with a clear error (the
llama.cpp backend does them: tests/engine/test_structured.py); plain tool history works."""

from __future__ import annotations

import pytest

import minicpm
from minicpm.grammar import SchemaError

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_torch_refuses_grammar_and_logprobs_clearly(tiny_hf) -> None:
    m = tiny_hf("gqa", seed=3)
    eng = minicpm.load(str(m.path), backend="torch", n_ctx=256)
    try:
        msgs = [{"role": "user", "content": "hi"}]
        with pytest.raises(SchemaError, match="llama.cpp"):
            eng.chat(msgs, response_format={"type": "json_object"})
        with pytest.raises(SchemaError, match="llama.cpp"):
            eng.chat(msgs, tools=[TOOL], tool_choice="required")
        with pytest.raises(ValueError, match="logprobs"):
            eng.chat(msgs, logprobs=True)
        # Tools not offered (tool_choice none) and a tool turn in the history: plain text.
        history = msgs + [{"role": "assistant", "content": "", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "42"}]
        assert isinstance(eng.chat(history, tools=[TOOL], tool_choice="none",
                                   max_tokens=3, temperature=0).read(), str)
    finally:
        eng.close()
