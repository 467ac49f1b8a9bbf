"""Prompt assembly on the real stand-in engine: linear in the number of parts, a handful of
tokenizations per request, cancellable; context fitting by binary search (issue 10 item 2,
issue 15 item 2)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from minicpm import prompts
from minicpm.backends.base import Backend
from minicpm.backends.llamacpp import LlamaCppBackend
from minicpm.backends.remote import RemoteBackend


@pytest.fixture(scope="module")
def engine(standin: Any) -> Any:
    return standin


class Counting:
    """Counts calls to the backend's tokenizer (the real one runs)."""

    def __init__(self, engine: Any, monkeypatch: Any):
        self.calls = 0
        real = engine.backend.tokenize

        def tokenize(text: str, add_bos: bool = True) -> list[int]:
            self.calls += 1
            return real(text, add_bos=add_bos)

        monkeypatch.setattr(engine.backend, "tokenize", tokenize)


def parts(n: int, text: str = "value {i} " * 8) -> list[dict[str, Any]]:
    return [{"kind": "text", "label": f"row {i}", "text": text.format(i=i)} for i in range(n)]


def test_twenty_thousand_parts_fit_fast_with_few_tokenizations(engine: Any,
                                                               monkeypatch: Any) -> None:
    q = [{"role": "user", "content": "Summarise the rows."}]
    many = parts(20_000)
    counter = Counting(engine, monkeypatch)
    a = prompts.assemble(engine, q, many, max_tokens=64)
    assert counter.calls < 100, counter.calls  # a search over 20,000 parts, not one each
    assert a.truncated and a.messages[-1]["content"].endswith("Summarise the rows.")
    assert prompts.TRUNCATED_NOTE in a.messages[-1]["content"]
    # What was kept fits with room for the answer, and uses most of the window.
    n = engine.count_tokens(engine.render(a.messages), add_bos=True)
    assert n + prompts.output_reserve(1024, 64) <= 1024
    assert n > 1024 // 2
    assert engine.chat(a.messages, temperature=0, max_tokens=2).read() is not None


def test_one_long_part_is_cut_not_dropped(engine: Any, monkeypatch: Any) -> None:
    q = [{"role": "user", "content": "What is in the log?"}]
    log = [{"kind": "output", "label": "log", "text": "line of output\n" * 5000}]
    counter = Counting(engine, monkeypatch)
    a = prompts.assemble(engine, q, log, max_tokens=64)
    assert counter.calls <= prompts.MAX_ROUNDS + 3
    assert a.truncated and "log (output)" in a.messages[-1]["content"]
    assert "…[truncated]" in a.messages[-1]["content"]
    n = engine.count_tokens(engine.render(a.messages), add_bos=True)
    assert 1024 // 2 < n <= 1024 - prompts.output_reserve(1024, 64)


def test_small_context_is_untouched(engine: Any) -> None:
    q = [{"role": "user", "content": "Why?"}]
    a = prompts.assemble(engine, q, parts(3))
    assert not a.truncated and a.messages[0]["content"] == prompts.SYSTEM_PROMPT
    assert all(f"row {i}:\nvalue {i}" in a.messages[-1]["content"] for i in range(3))


def test_cancel_stops_assembly(engine: Any) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(prompts.AssemblyCancelled):
        prompts.assemble(engine, [{"role": "user", "content": "x"}], parts(5000), cancel=cancel)


def test_images_on_a_text_model_become_text(engine: Any) -> None:
    from PIL import Image

    img = Image.new("RGB", (64, 48))
    a = prompts.assemble(engine, [{"role": "user", "content": "What is it?"}],
                         [{"kind": "image", "label": "figure", "data": "…",
                           "summary": "a red square"}], {0: img})
    assert a.images == [] and "cannot see images" in (a.notice or "")
    assert "64×48 pixels" in a.messages[-1]["content"] and "a red square" in a.messages[-1]["content"]


def test_fit_chat_drops_turns_with_a_few_tokenizations(engine: Any, monkeypatch: Any) -> None:
    history: list[dict[str, str]] = []
    for i in range(300):
        history += [{"role": "user", "content": f"Fact {i}: " + "blah " * 20},
                    {"role": "assistant", "content": "Noted."}]
    history.append({"role": "user", "content": "What was fact 299?"})
    counter = Counting(engine, monkeypatch)
    g = engine.chat(history, truncate="left", temperature=0, max_tokens=8)
    g.read()
    assert counter.calls <= 14, counter.calls  # 1 + log2(600) + the final check
    full = len(engine.backend.tokenize(engine.render(history), add_bos=True))
    assert g.usage.truncated_tokens == full - g.usage.prompt_tokens
    assert g.usage.prompt_tokens + prompts.output_reserve(1024, 8) <= 1024


def test_can_tokenize_flag() -> None:
    assert LlamaCppBackend.can_tokenize is True
    assert RemoteBackend.can_tokenize is False
    assert Backend.can_tokenize is False


def test_output_reserve_is_one_formula() -> None:
    assert prompts.output_reserve(4096, 10_000) == 512
    assert prompts.output_reserve(4096, 100) == 100
    assert prompts.output_reserve(64, 1000) == 16
