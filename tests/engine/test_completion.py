"""Inline completion on the engine side: prompt building and budget, stopping, overlap
trimming, parse filtering, FIM tokens from a GGUF vocabulary, and a real run on the stand-in."""

from __future__ import annotations

import threading

import pytest

from minicpm.completion import (
    BUDGET_STEP,
    Cell,
    CompletionRequest,
    FimTokens,
    Suggestion,
    TokenCounter,
    build_prompt,
    cell_text,
    parses,
    scan,
    stream_suggestion,
    suggestion_parses,
    trim_overlap,
)

CELLS = [
    Cell("markdown", "# Sales analysis\nLoad the data, then plot it."),
    Cell("code", "import pandas as pd\nimport numpy as np"),
    Cell("raw", "not part of the script"),
    Cell("code", "df = pd.read_csv('sales.csv')\ndf.head()"),
]


def words(text: str) -> int:
    """A deterministic stand-in tokenizer for budget tests: one token per word or symbol."""
    return len(text.replace("\n", " \n ").split())


# --- prompt --------------------------------------------------------------------------------


def test_prompt_is_a_script_of_earlier_cells_then_the_cell_up_to_the_cursor():
    req = CompletionRequest(prefix="df.groupby(", suffix=")\nprint(1)", before=CELLS)
    p = build_prompt(req, words)
    assert p.text == ("# # Sales analysis\n# Load the data, then plot it.\n\n"
                      "import pandas as pd\nimport numpy as np\n\n"
                      "df = pd.read_csv('sales.csv')\ndf.head()\n\n"
                      "df.groupby(")
    assert not p.fim and p.cells_used == 3 and p.cells_total == 3  # the raw cell is left out
    assert "print(1)" not in p.text  # no FIM tokens: the text after the cursor is not shown
    assert "```" not in p.text and "<" not in p.text  # no chat template, no fences


def test_budget_keeps_the_current_cell_and_the_nearest_cells_in_order():
    before = [Cell("code", f"x{i} = {i}  # " + "w " * 40) for i in range(30)]
    req = CompletionRequest(prefix="y = ", before=before)
    p = build_prompt(req, words, budget=300)
    assert p.tokens <= 300
    assert 0 < p.cells_used < 30
    assert p.text.endswith("y = ")
    # the nearest earlier cells, contiguous, oldest first
    first = 30 - p.cells_used
    assert p.text.startswith(f"x{first} = {first}")
    idx = [p.text.index(f"x{i} = ") for i in range(first, 30)]
    assert idx == sorted(idx)


def test_typing_changes_only_the_end_of_the_prompt():
    before = [Cell("code", f"value_{i} = compute({i})  # " + "note " * 30) for i in range(40)]
    text = "result = value_39 + value_38\nprint(result)\nfor k in range(10):\n    total = k * 2"
    prompts = [build_prompt(CompletionRequest(prefix=text[:n], before=before), words,
                            budget=512).text for n in range(1, len(text) + 1)]
    moved = 0
    for n, (a, b) in enumerate(zip(prompts, prompts[1:], strict=False), start=1):
        if b == a + text[n]:
            continue  # one keystroke appended one character at the very end
        moved += 1  # the earlier cells changed: allowed only at a budget step
        assert words(text[:n]) // BUDGET_STEP != words(text[: n + 1]) // BUDGET_STEP or \
            -(-words(text[:n]) // BUDGET_STEP) != -(-words(text[: n + 1]) // BUDGET_STEP)
    steps = {-(-words(text[:n]) // BUDGET_STEP) for n in range(1, len(text) + 1)}
    assert moved <= len(steps) - 1


def test_moving_to_the_next_cell_rarely_changes_the_prompt_start():
    cells = [Cell("code", f"step_{i} = run({i})  # " + "w " * 30) for i in range(60)]
    starts = []
    for k in range(20, 60):  # typing cell k, cells before it are there
        p = build_prompt(CompletionRequest(prefix="x = ", before=cells[:k]), words, budget=512)
        assert p.tokens <= 512 and p.cells_used >= 3  # at least half the room is used
        starts.append(p.text.split(" = ", 1)[0])
    changes = sum(a != b for a, b in zip(starts, starts[1:], strict=False))
    assert changes <= len(starts) // 3  # a sliding window would change it every time


def test_a_current_cell_over_budget_keeps_its_end():
    prefix = "\n".join(f"line_{i} = {i}" for i in range(400))
    p = build_prompt(CompletionRequest(prefix=prefix, before=CELLS), words, budget=256)
    assert p.tokens <= 256 and p.cut_tokens > 0 and p.cells_used == 0
    assert p.text.endswith("line_399 = 399") and p.text.startswith("line_")


def test_fim_prompt_puts_the_rest_of_the_cell_after_the_suffix_token():
    fim = FimTokens("<PRE>", "<SUF>", "<MID>")
    req = CompletionRequest(prefix="def f(x):\n    return ", suffix="\n\nprint(f(2))", before=CELLS)
    p = build_prompt(req, words, fim=fim)
    assert p.fim
    assert p.text.startswith("<PRE># # Sales analysis")
    assert p.text.endswith("def f(x):\n    return <SUF>\n\nprint(f(2))<MID>")


def test_markdown_becomes_comments_and_outputs_never_appear():
    assert cell_text(Cell("markdown", "Title\n\nText")) == "# Title\n#\n# Text"
    assert cell_text(Cell("raw", "x")) == ""
    assert cell_text(Cell("code", "x = 1\n\n")) == "x = 1"


def test_token_counter_memoises():
    calls = []

    def count(t: str) -> int:
        calls.append(t)
        return len(t)

    c = TokenCounter(count, size=2)
    assert c("abc") == 3 and c("abc") == 3 and calls == ["abc"]
    c("d"), c("e"), c("abc")
    assert calls == ["abc", "d", "e", "abc"]  # evicted past its size


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        CompletionRequest(prefix="x", mode="paragraph")


# --- stopping --------------------------------------------------------------------------------


def feed_all(req: CompletionRequest, chunks: list[str]) -> Suggestion:
    s = Suggestion(req)
    for c in chunks:
        if s.feed(c):
            break
    return s


def test_line_mode_stops_at_the_end_of_the_line():
    s = feed_all(CompletionRequest(prefix="import num"), ["py as", " np\nimport pandas\n"])
    assert s.done and s.stop_reason == "line" and s.final() == "py as np"


def test_line_mode_after_a_header_suggests_the_next_line():
    s = feed_all(CompletionRequest(prefix="def square(x):"), ["\n", "    return x * x\n", "\n"])
    assert s.final() == "\n    return x * x"


def test_statement_mode_runs_until_brackets_close():
    req = CompletionRequest(prefix="df = pd.DataFrame(", mode="statement")
    s = feed_all(req, ["{'a': [1, 2],\n", "                   'b': [3, 4]})\n", "df.head()\n"])
    assert s.stop_reason == "statement"
    assert s.final() == "{'a': [1, 2],\n                   'b': [3, 4]})"


def test_statement_mode_takes_a_compound_statement_with_its_body():
    req = CompletionRequest(prefix="for i in range(3):", mode="statement")
    s = feed_all(req, ["\n    print(i)\n    total += i\n", "print(total)\n"])
    assert s.stop_reason == "block" and s.final() == "\n    print(i)\n    total += i"


def test_block_mode_stops_at_a_blank_line_at_top_level():
    req = CompletionRequest(prefix="x = 1\n", mode="block")
    s = feed_all(req, ["y = 2\nz = x + y\n", "\n", "w = 4\n"])
    assert s.stop_reason == "block" and s.final() == "y = 2\nz = x + y"


def test_block_mode_stops_at_a_dedent_inside_a_function():
    req = CompletionRequest(prefix="def f(a):\n    b = a + 1\n    ", mode="block")
    s = feed_all(req, ["c = b * 2\n", "    return c\n", "print(f(1))\n"])
    assert s.final() == "c = b * 2\n    return c"


def test_a_fresh_line_keeps_the_editors_indentation():
    """After Enter and the auto-indent, a reply that starts with a space (the stand-in's
    tokens do) must not indent the line one column deeper, nor end a block at once."""
    req = CompletionRequest(prefix="def f(a):\n    ", mode="block")
    s = feed_all(req, [" ", "b = a + 1\n", "    return b\n", "print(f(1))\n"])
    assert s.final() == "b = a + 1\n    return b"
    s = feed_all(CompletionRequest(prefix="x = 1\n"), ["  \n", "y = 2\n"])
    assert s.final() == "\ny = 2"  # no stray spaces left on the fresh line
    s = feed_all(CompletionRequest(prefix="x = (1,"), [" 2)\n"])
    assert s.final() == " 2)"  # not a fresh line: the space is the model's


def test_code_fences_are_never_returned():
    s = feed_all(CompletionRequest(prefix="x = ", mode="block"), ["42\n``", "`\nprint(x)"])
    assert s.stop_reason == "fence" and s.final() == "42" and "`" not in s.final()
    s = feed_all(CompletionRequest(prefix="x = 1\n", mode="block"), ["```python\nx = 2\n```"])
    assert s.final() == "" and s.dropped == "empty"


def test_visible_text_never_shows_a_trailing_blank_or_a_possible_overlap():
    req = CompletionRequest(prefix="print(len(", suffix="))")
    s = Suggestion(req)
    s.feed("data")
    assert s.visible == "data"
    s.feed(")")  # may be the start of the "))" already after the cursor: held back
    assert s.visible == "data"
    s.feed(")\n")
    assert s.done and s.final() == "data"
    s2 = Suggestion(CompletionRequest(prefix="x = 1", mode="block"))
    s2.feed("0\n    ")
    assert s2.visible == "0"


def test_stream_suggestion_stops_pulling_from_the_model():
    pulled = []

    def model():
        for piece in ["a", "b\n", "c", "d"]:
            pulled.append(piece)
            yield piece

    s = Suggestion(CompletionRequest(prefix="x = "))
    assert list(stream_suggestion(model(), s)) == ["a", "ab"]
    assert pulled == ["a", "b\n"]


# --- overlap and parsing ---------------------------------------------------------------------


@pytest.mark.parametrize("text,suffix,want", [
    ("x, y)", ")", "x, y"),
    ("x, y):", "):", "x, y"),
    ("x)", "):", "x"),
    ("x + 1", ")", "x + 1"),
    ("a = 1\nprint(a)", "\nprint(a)\n", "a = 1"),
    ("a = 1\nb = 2", "\nprint(a)", "a = 1\nb = 2"),
])
def test_trim_overlap(text, suffix, want):
    assert trim_overlap(text, suffix) == want


@pytest.mark.parametrize("code,ok", [
    ("x = 1", True),
    ("for i in range(10):", True),  # a block just opened: typing goes on
    ("df.groupby(['a',", True),  # open brackets
    ('s = """doc', True),  # open string
    ("try:\n    x = load()", True),
    ("x = = 2", False),
    ("print(x))", False),
    ("def f(:\n    pass", False),
    ("if x:\nprint(x)", False),  # missing indentation
    ("%matplotlib inline\nimport numpy as np", True),  # IPython syntax
    ("!pip install x\ndf?", True),
    ("%%bash\necho hi )", True),  # a cell magic is not Python
])
def test_parses(code, ok):
    assert parses(code) is ok


def test_suggestions_that_break_the_cell_are_dropped():
    req = CompletionRequest(prefix="total = sum(", suffix=")\nprint(total)")
    s = feed_all(req, ["values))\n"])  # one bracket too many, even after trimming
    assert s.final() == "" and s.dropped == "syntax"
    s = feed_all(req, ["values)\n"])
    assert s.final() == "values" and s.dropped is None
    # An error elsewhere in the cell: only the code up to the suggestion is judged.
    broken = CompletionRequest(prefix="x = 1\ny = ", suffix="\nz = = (")
    assert suggestion_parses(broken, "3")
    assert not suggestion_parses(CompletionRequest(prefix="y = "), "= 3")


def test_scan_knows_strings_and_comments():
    assert scan("f('(', [1,  # (\n").brackets == ["(", "["]
    assert scan('x = """a\n(').quote == '"""'
    assert scan("x = 'a' # '").quote is None


# --- real models -----------------------------------------------------------------------------


def test_standin_has_no_fim_tokens_and_completes_code(standin):
    from minicpm import completion

    assert completion.fim_tokens(standin) is None
    req = CompletionRequest(prefix="import numpy as np\n\ndef mean(values):\n    return ",
                            before=CELLS)
    prompt, sugg, gen = completion.complete(standin, req, max_tokens=24)
    try:
        shown = list(stream_suggestion(gen, sugg))
    finally:
        gen.close()
    assert prompt.tokens <= 1024 and prompt.cells_used == 3
    assert gen.usage.prompt_tokens > 20
    final = sugg.final()
    # Whatever the model wrote, the result is one line that parses with the cell, or nothing.
    assert "\n" not in final and "```" not in final
    if final:
        assert parses(req.prefix + final)
        assert shown and final.startswith(shown[-1][: len(final)]) or shown[-1].startswith(final)
    else:
        assert sugg.dropped in ("empty", "syntax")
    assert gen.usage.completion_tokens <= 24


def test_cancel_from_another_thread_frees_the_engine(standin):
    from minicpm import completion

    ev = threading.Event()
    req = CompletionRequest(prefix="# count\nnumbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
                            mode="block")
    _, sugg, gen = completion.complete(standin, req, max_tokens=200, cancel=ev, ignore_eos=True)
    it = iter(gen)
    next(it)
    n = gen.usage.completion_tokens
    ev.set()
    list(it)
    gen.close()
    assert gen.usage.finish_reason == "cancelled" and gen.usage.completion_tokens - n <= 1
    # the engine is free again at once: another request runs
    assert standin.complete("x = ", max_tokens=2, temperature=0).read() is not None


def test_fim_tokens_are_read_from_the_gguf_vocabulary(tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    import minicpm
    from minicpm import completion
    from minicpm.testing import TinyConfig, random_weights, tiny_vocab, write_gguf
    from minicpm.testing.tiny_tokenizer import CONTROL

    cfg = TinyConfig()
    vocab = tiny_vocab(cfg.vocab_size)
    for name in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"):
        k = next(i for i, p in enumerate(vocab.pieces) if p.startswith("<unused"))
        vocab.pieces[k], vocab.types[k], vocab.scores[k] = name, CONTROL, 0.0
    path = write_gguf(cfg, random_weights(cfg, 1), tmp_path / "fim.gguf", vocab=vocab)
    e = minicpm.load(str(path), n_ctx=256, n_threads=2)
    try:
        fim = completion.fim_tokens(e)
        assert fim == FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
        req = CompletionRequest(prefix="def f(x):\n    return ", suffix="\nprint(f(1))")
        prompt, sugg, gen = completion.complete(e, req, max_tokens=4, budget=200)
        list(stream_suggestion(gen, sugg))
        gen.close()
        assert prompt.fim and prompt.text.startswith("<|fim_prefix|>")
        # each FIM marker is one special token, not spelled out in characters
        ids = e.backend.tokenize(prompt.text, add_bos=False)
        assert ids[0] == vocab.pieces.index("<|fim_prefix|>")
        assert vocab.pieces.index("<|fim_middle|>") == ids[-1]
    finally:
        e.close()
