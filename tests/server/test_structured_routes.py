"""Structured outputs, tools, logprobs and the rest of the OpenAI surface, through a real
`jupyter server` with the stand-in and the real `openai` client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a timezone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                   "required": ["timezone"]}}}


class Person(BaseModel):
    name: str
    age: int
    city: str
    email: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, start_real_server: Any) -> Any:
    yield from start_real_server(tmp_path_factory.mktemp("structured"))


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    # A generous timeout: on a busy shared machine one constrained answer can take a minute.
    return openai.OpenAI(base_url=server + "/minicpm/v1", api_key="t0k", max_retries=0,
                         timeout=500)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    r = client.chat.completions.parse(
        model="default", response_format=Person, temperature=0, max_tokens=80,
        messages=ask("Extract the person: Maria Lopez, 34, lives in Madrid, "
                     "maria@example.com"))
    person = r.choices[0].message.parsed
    assert isinstance(person, Person)  # parsed and validated by pydantic itself
    assert r.choices[0].finish_reason == "stop"


def test_json_object_always_parses_even_when_sampled(client: openai.OpenAI) -> None:
    for seed in range(3):
        r = client.chat.completions.create(
            model="default", response_format={"type": "json_object"}, temperature=1.0,
            seed=seed, max_tokens=200, messages=ask("Describe a cat as JSON."))
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_forced_tool_call_and_the_tool_result_turn(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="default", tools=[WEATHER, TIME], temperature=0, max_tokens=60,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=ask("What's the weather in Paris?"))
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    # The call and its result go back in the history; the model answers in text.
    follow = client.chat.completions.create(
        model="default", tools=[WEATHER, TIME], temperature=0, max_tokens=30,
        messages=[*ask("What's the weather in Paris?"),
                  {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                  {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}],
        tool_choice="none")
    assert follow.choices[0].message.content
    assert not follow.choices[0].message.tool_calls


def test_required_picks_any_listed_tool(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="default", tools=[WEATHER, TIME], tool_choice="required", temperature=0,
        max_tokens=60, messages=ask("What time is it in Tokyo?"))
    calls = r.choices[0].message.tool_calls
    assert calls and all(c.function.name in ("get_weather", "get_time") for c in calls)
    for c in calls:
        spec = WEATHER if c.function.name == "get_weather" else TIME
        jsonschema.validate(json.loads(c.function.arguments), spec["function"]["parameters"])


def test_streamed_tool_call_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="default", tools=[WEATHER], tool_choice="required", temperature=0,
        max_tokens=60, stream=True, messages=ask("Weather in Oslo, in celsius?"))
    firsts, fragments, finish = [], [], None
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or ():
            assert tc.index == 0
            if tc.id is not None:  # OpenAI's first chunk: id, type, name
                firsts.append((tc.id, tc.type, tc.function.name))
            if tc.function and tc.function.arguments:
                fragments.append(tc.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert len(firsts) == 1 and firsts[0][1] == "function" and firsts[0][2] == "get_weather"
    assert len(fragments) > 1  # streamed in pieces, not one blob
    jsonschema.validate(json.loads("".join(fragments)), WEATHER["function"]["parameters"])
    assert finish == "tool_calls"


def test_logprobs_shape(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="default", messages=ask("Say hi."), temperature=0,
                                       max_tokens=6, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content).strip() == r.choices[0].message.content.strip()
    for t in content:
        assert t.logprob <= 0 and bytes(t.bytes).decode("utf-8", "replace") == t.token
        assert len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.logprob  # greedy: the chosen one is the top
    none = client.chat.completions.create(model="default", messages=ask("Hi."), max_tokens=2)
    assert none.choices[0].logprobs is None


def test_n_choices_and_seed_reproducible_whatever_ran_before(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = dict(model="default", messages=ask("Name a colour."),
                              temperature=1.0, seed=7, max_tokens=12)
    a = client.chat.completions.create(n=3, **kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    client.chat.completions.create(model="default", messages=ask("Something else."),
                                   max_tokens=20)
    b = client.chat.completions.create(n=3, **kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_penalties_and_logit_bias(client: openai.OpenAI) -> None:
    # +100 on one token id: greedy picks it every time (the answer is that token repeated).
    r = client.chat.completions.create(model="default", messages=ask("Say hi."), temperature=0,
                                       max_tokens=5, logprobs=True, logit_bias={"1000": 100})
    tokens = [t.token for t in r.choices[0].logprobs.content]
    assert len(tokens) == 5 and len(set(tokens)) == 1
    # (the penalties' effect is checked on the engine: tests/engine/test_structured.py)
    for bad in ({"frequency_penalty": 9.0}, {"logit_bias": {"abc": 5}},
                {"top_logprobs": 3}, {"n": 0}):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="default", messages=ask("x"), **bad)


def test_unconvertible_schema_is_a_400(client: openai.OpenAI) -> None:
    for schema in ({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}},
                   {"type": "object", "properties": {"x": {"$ref": "https://example.com/s"}}},
                   {"type": "wizard"}):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="default", messages=ask("x"), max_tokens=4,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "s", "schema": schema}})
        assert e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=ask("x"), tools=[WEATHER],
                                       tool_choice={"type": "function",
                                                    "function": {"name": "nope"}})
    # The server is fine afterwards.
    assert client.chat.completions.create(model="default", messages=ask("hi"),
                                          max_tokens=2).choices


def test_models_by_id_and_json_404s(client: openai.OpenAI, server: str) -> None:
    assert client.models.retrieve("default").object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="default", input="hello")
    assert "embeddings" in e.value.body["message"]
    for method, path in (("GET", "nope"), ("POST", "audio/speech"), ("DELETE", "files/x"),
                         ("PUT", "chat/completions")):
        status, body = _raw(server, method, path, key="t0k")
        assert status in (404, 405), (method, path)
        assert set(body["error"]) >= {"message", "type", "param", "code"}


def test_missing_or_wrong_key_is_a_json_401(server: str) -> None:
    for key in (None, "wrong"):
        for method, path in (("POST", "chat/completions"), ("GET", "models"),
                             ("GET", "nope")):
            status, body = _raw(server, method, path, key=key)
            assert status == 401, (key, method, path, body)
            assert body["error"]["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=server + "/minicpm/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="default", messages=ask("hi"), max_tokens=2)


def test_context_length_exceeded_code(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="default", messages=ask("word " * 3000),
                                       max_tokens=4)
    assert e.value.code == "context_length_exceeded"


def _raw(server: str, method: str, path: str, key: str | None) -> tuple[int, Any]:
    data = b"{}" if method in ("POST", "PUT") else None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(f"{server}/minicpm/v1/{path}", data=data, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
