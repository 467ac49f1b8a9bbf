"""Where the context sits in a conversation: on the first question ("first", the sidebar's
chat) a follow-up's prompt starts with the previous prompt and its answer, so the prompt
cache reads only the new turn; beside the question ("last", one-shot asks) the notebook moves
behind each answer and is read again. Checked on the real stand-in's prompt cache."""

from __future__ import annotations

from typing import Any

import pytest

from minicpm import prompts

NOTEBOOK = [{"kind": "cell", "label": f"cell [{i}]", "language": "python",
             "text": f"x{i} = load_part({i}) * 2\nprint(x{i}.describe())"} for i in range(12)]
Q1 = "What does this notebook compute?"
Q2 = "And what does cell [3] print?"


def _follow_up(engine: Any, context_turn: str) -> tuple[int, int, prompts.Assembled]:
    """Ask Q1 then Q2 with the same notebook; returns (tokens of the first prompt, tokens the
    second request reused from the cache, the second request's messages)."""
    engine.backend.kv.forget()
    first = prompts.assemble(engine, [{"role": "user", "content": Q1}], NOTEBOOK,
                             max_tokens=8, context_turn=context_turn)
    first_tokens = engine.count_tokens(engine.render(first.messages), add_bos=True)
    answer = engine.chat(first.messages, temperature=0, max_tokens=8).read()
    history = [{"role": "user", "content": Q1}, {"role": "assistant", "content": answer},
               {"role": "user", "content": Q2}]
    second = prompts.assemble(engine, history, NOTEBOOK, max_tokens=8, context_turn=context_turn)
    engine.chat(second.messages, temperature=0, max_tokens=2).read()
    return first_tokens, engine.stats()["prompt_cache"]["last"]["reused"], second


def test_context_on_the_first_question_keeps_the_follow_up_prefix(standin: Any) -> None:
    first_tokens, reused, second = _follow_up(standin, "first")
    user_turns = [m for m in second.messages if m["role"] == "user"]
    assert "cell [11]" in user_turns[0]["content"] and user_turns[0]["content"].endswith(Q1)
    assert user_turns[-1]["content"] == Q2  # the follow-up is asked plainly
    assert reused >= first_tokens  # the whole first prompt (and its answer) came from the cache


def test_context_beside_the_question_is_read_again(standin: Any) -> None:
    first_tokens, reused, second = _follow_up(standin, "last")
    assert second.messages[-1]["content"].endswith(Q2) and "cell [11]" in second.messages[-1]["content"]
    assert reused < first_tokens // 4  # only the system prompt matched: the notebook moved


def test_an_unknown_context_turn_is_refused(standin: Any) -> None:
    with pytest.raises(ValueError, match="context_turn"):
        prompts.assemble(standin, [{"role": "user", "content": "q"}], NOTEBOOK, context_turn="middle")
