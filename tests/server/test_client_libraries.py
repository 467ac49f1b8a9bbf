"""LangChain's ``with_structured_output`` / ``bind_tools`` and instructor's default mode against
a real `jupyter server` with the stand-in (skipped where those libraries are not installed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
    city: str


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return "sunny"


TEXT = "Extract the person: Maria Lopez, 34, lives in Madrid."


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, start_real_server: Any) -> Any:
    yield from start_real_server(tmp_path_factory.mktemp("libs"))


def test_langchain_structured_output_and_bind_tools(server: str) -> None:
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(base_url=server + "/minicpm/v1", api_key="t0k", model="default",
                        temperature=0, max_tokens=80, max_retries=0)
    # LangChain's default for a pydantic model: response_format json_schema (strict).
    person = llm.with_structured_output(Person).invoke(TEXT)
    assert isinstance(person, Person)
    # function_calling: LangChain forces a tool call named after the model.
    person = llm.with_structured_output(Person, method="function_calling").invoke(TEXT)
    assert isinstance(person, Person)
    msg = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Oslo?")
    (call,) = msg.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


def test_instructor_default_mode(server: str) -> None:
    instructor = pytest.importorskip("instructor")
    import openai

    client = instructor.from_openai(openai.OpenAI(base_url=server + "/minicpm/v1",
                                                  api_key="t0k", max_retries=0))
    person = client.chat.completions.create(
        model="default", response_model=Person, temperature=0, max_tokens=80, max_retries=0,
        messages=[{"role": "user", "content": TEXT}])
    assert isinstance(person, Person)
    assert json.loads(person.model_dump_json())["age"] == person.age
