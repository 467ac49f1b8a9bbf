"""``Engine.prefill`` (issue 25, the pre-read): it reads a prompt prefix into the KV without
sampling, a real request then resumes from it, a cancel or a waiting request stops it within
one chunk, and an edited prefix re-reads only from the first change. The real stand-in
(SmolLM2-135M on llama.cpp); no timed assertion: cancels are set from the decode hook."""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

CELL = ("# %% cell [{i}]\nimport numpy as np\nx{i} = np.linspace(0, {i}, 50)\n"
        "print(x{i}.mean(), x{i}.std())\n")


@pytest.fixture(scope="module")
def standin() -> Any:
    """The stand-in with the thread count chosen by load (the machine running the tests is
    usually busy: two fixed threads crawl there)."""
    import minicpm

    e = minicpm.load(n_ctx=2048)
    yield e
    e.close()


def notebook(n: int, changed: int | None = None) -> str:
    cells = [CELL.format(i=i) for i in range(n)]
    if changed is not None:
        cells[changed] = cells[changed].replace("mean", "max")
    return "notebook:\n```python\n" + "\n\n".join(cells) + "\n```"


def messages(context: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are MiniCPM."},
            {"role": "user", "content": f"{context}\n\n{question}"}]


def prefix_text(engine: Any, context: str) -> str:
    """The chat rendered up to where the question goes (what the server pre-reads)."""
    marker = "\u27e6question\u27e7"
    full = engine.render(messages(context, marker))
    return full[:full.index(marker)]


def fresh(engine: Any) -> None:
    """Nothing live and nothing cached (earlier tests left snapshots of these notebooks)."""
    engine.backend.kv.cache.clear()
    engine.backend.kv.forget()


def last(engine: Any) -> dict[str, Any]:
    return engine.stats()["prompt_cache"]["last"]


def test_prefill_then_chat_reuses_the_whole_prefix(standin: Any) -> None:
    fresh(standin)
    ctx = notebook(8)
    out = standin.prefill(prefix_text(standin, ctx), chunk_tokens=32)
    assert out["supported"] and not out["cancelled"]
    assert out["prefilled"] == out["prompt_tokens"] > 150
    g = standin.chat(messages(ctx, "What does the notebook compute?"), temperature=0,
                     max_tokens=4)
    g.read()
    assert last(standin)["reused"] >= out["prompt_tokens"]
    # reading it again costs nothing: all of it is live
    again = standin.prefill(prefix_text(standin, ctx))
    assert again["reused"] >= out["prompt_tokens"] - 1 and again["prefilled"] <= 1


def test_an_edit_rereads_from_the_first_changed_cell(standin: Any) -> None:
    fresh(standin)
    first = standin.prefill(prefix_text(standin, notebook(8)))
    edited = standin.prefill(prefix_text(standin, notebook(8, changed=6)))
    head = prefix_text(standin, notebook(8)).split("# %% cell [6]")[0]
    head_tokens = standin.count_tokens(head, add_bos=True)
    assert edited["reused"] >= head_tokens - 2  # the cells before the edit
    assert edited["prefilled"] < first["prefilled"] / 2
    assert edited["reused"] + edited["prefilled"] == edited["prompt_tokens"]


def test_cancel_stops_within_one_chunk(standin: Any) -> None:
    fresh(standin)
    kv = standin.backend.kv
    cancel = threading.Event()
    tune, calls = kv.tune, []
    # called before each chunk's llama_decode: cancel as the second chunk starts
    kv.tune = lambda: (calls.append(1), len(calls) == 2 and cancel.set())
    try:
        out = standin.prefill(prefix_text(standin, notebook(8)), cancel=cancel, chunk_tokens=16)
    finally:
        kv.tune = tune
    assert out["cancelled"] and out["prefilled"] == 16  # the second chunk was given up
    assert kv.n_tokens == 16  # what was read stays live


def test_cancel_gives_up_a_chunk_mid_way(standin: Any) -> None:
    """One chunk of the whole prefix: the cancel lands inside it (llama.cpp's abort callback,
    asked before every graph node), so nothing of it is kept and nothing waits for its end."""
    from enginehelpers import CancelAfter

    fresh(standin)
    cancel = CancelAfter(40)  # the loop's own check, then ~39 graph nodes into the chunk
    out = standin.prefill(prefix_text(standin, notebook(8)), cancel=cancel, chunk_tokens=4096)
    assert out["cancelled"] and out["prefilled"] == 0
    assert cancel.left < 0 and standin.backend.kv.n_tokens == 0
    # the engine works on: a request after it reads everything
    again = standin.prefill(prefix_text(standin, notebook(8)))
    assert not again["cancelled"] and again["prefilled"] == again["prompt_tokens"]


def test_a_waiting_chat_preempts_the_prefill_within_one_chunk(standin: Any) -> None:
    """A chat that asks for the engine while a prefill runs: the prefill stops at its next
    chunk and the chat runs (and reuses what was read)."""
    fresh(standin)
    kv = standin.backend.kv
    ctx = notebook(10)
    result: dict[str, Any] = {}
    chunks: list[int] = []
    tune = kv.tune
    chat_done = threading.Event()

    def ask() -> None:
        result["text"] = standin.chat(messages(ctx, "Which cell prints?"), temperature=0,
                                      max_tokens=3).read()
        chat_done.set()

    def on_chunk() -> None:
        chunks.append(kv.n_tokens)
        if len(chunks) == 2:  # the prefill holds the engine: a chat arrives now
            threading.Thread(target=ask, daemon=True).start()
            while standin._wanted == 0:  # until it waits for the lock (event, not time)
                threading.Event().wait(0.001)

    kv.tune = on_chunk
    try:
        out = standin.prefill(prefix_text(standin, ctx), chunk_tokens=16)
    finally:
        kv.tune = tune
    assert chat_done.wait(120)
    # it gave up the chunk running when the chat came (mid-way) or stopped before the next
    assert out["cancelled"] and out["prefilled"] in (16, 32)
    assert "text" in result


def test_backends_without_a_prompt_cache_say_so() -> None:
    import minicpm
    from minicpm.backends.base import Backend

    class NoCache(Backend):
        name = "nocache"

    out = minicpm.Engine(NoCache()).prefill("hello")
    assert out == {"supported": False, "reason": "the nocache backend keeps no prompt cache"}
