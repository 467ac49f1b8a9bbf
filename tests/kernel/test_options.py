"""Pure parts of the magics: option parsing, interpolation, formats, memory."""

from __future__ import annotations

import pytest
from minicpm_magics.context import interpolate
from minicpm_magics.memory import Conversation
from minicpm_magics.options import MagicUsageError, parse
from minicpm_magics.render import extract_code, parse_json


def test_options_then_question_verbatim() -> None:
    r = parse("--temperature 0 --top-p 0.5 --max-tokens 7 --seed 3 --system 'Be terse.' "
              "--format code --context cell --no-stream What's {x}  here?")
    assert (r.command, r.arg) == ("ask", "What's {x}  here?")
    assert r.sampling() == {"temperature": 0.0, "top_p": 0.5, "max_tokens": 7, "seed": 3}
    assert (r.system, r.format, r.context, r.no_stream) == ("Be terse.", "code", "cell", True)


def test_unset_options_leave_engine_defaults() -> None:
    assert parse("hello").sampling() == {}


@pytest.mark.parametrize("line,command,arg", [
    ("explain", "explain", ""), ("explain 3", "explain", "3"), ("explain In[4]", "explain", "In[4]"),
    ("explain recursion to me", "ask", "explain recursion to me"),
    ("fix", "fix", ""), ("fix my code please", "ask", "fix my code please"),
    ("image", "image", ""), ("image fig", "image", "fig"), ("use stand-in", "use", "stand-in"),
    ("models", "models", ""), ("status", "status", ""), ("reset", "reset", ""),
    ("history", "history", ""), ("help", "help", ""), ("chat", "chat", ""),
    ("ask status", "ask", "status"), ("--max-tokens=5 status", "status", ""),
])
def test_subcommands(line: str, command: str, arg: str) -> None:
    r = parse(line)
    assert (r.command, r.arg) == (command, arg)


@pytest.mark.parametrize("line,needle", [
    ("--bogus hi", "unknown option --bogus"), ("--temperature hot hi", "needs a number"),
    ("--max-tokens 0 hi", "at least 1"), ("--format yaml hi", "--format must be one of"),
    ("--context all hi", "--context must be one of"), ("--top-p 2 hi", "--top-p"),
    ("--seed", "needs a value"), ("", "nothing to ask"), ("--no-stream=1 hi", "takes no value"),
])
def test_bad_options(line: str, needle: str) -> None:
    with pytest.raises(MagicUsageError, match=needle.replace("[", r"\[")):
        parse(line)


def test_cell_magic_body_is_the_question() -> None:
    r = parse("--format json", "Give me {a: 1}\n")
    assert (r.command, r.arg, r.format) == ("ask", "Give me {a: 1}", "json")
    r = parse("explain 2", "Explain it like I'm five")
    assert (r.command, r.arg, r.instruction) == ("explain", "2", "Explain it like I'm five")
    with pytest.raises(MagicUsageError, match="goes in the cell body"):
        parse("--format json stray words", "body")


def test_interpolation() -> None:
    ns = {"x": 42, "In": ["", "a = 1"], "Out": {1: [1, 2]}}
    assert interpolate("x={x} in={In[1]} out={Out[1]}", ns) == "x=42 in=a = 1 out=[1, 2]"
    # braces that do not evaluate stay (questions about code), {{ }} escape
    assert interpolate("d = {'a': 1} {nope} {{x}}", ns) == "d = {'a': 1} {nope} {x}"


def test_extract_code_and_json() -> None:
    assert extract_code("Here:\n```python\nprint(1)\n```\nDone") == "print(1)"
    assert extract_code("```python\nx = 1\ny = 2") == "x = 1\ny = 2"  # cut off mid-block
    assert extract_code("x = 1") == "x = 1"
    assert parse_json('Sure! ```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert parse_json('The list: [1, 2, 3].') == [1, 2, 3]
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json("no json here")


def test_memory_is_bounded() -> None:
    c = Conversation(max_turns=2, max_chars=100)
    for i in range(4):
        c.add(f"q{i}", f"a{i}")
    assert [m["content"] for m in c.messages()] == ["q2", "a2", "q3", "a3"]
    c.add("q" * 60, "a" * 60)  # over max_chars on its own: dropped with everything older
    assert len(c) == 0
    c.add("q", "a")
    assert c.reset() == 1 and c.messages() == []


def test_trailing_question_mark_is_not_a_help_request() -> None:
    from IPython.core.inputtransformer2 import TransformerManager
    from minicpm_magics.options import keep_question_marks

    tm = TransformerManager()
    tm.cleanup_transforms.append(keep_question_marks)
    code = tm.transform_cell("%minicpm --max-tokens 5 What is my name?\n")
    assert code == "get_ipython().run_line_magic('minicpm', '--max-tokens 5 What is my name?')\n"
    # other help requests are untouched
    assert "pinfo" in tm.transform_cell("len?\n")
