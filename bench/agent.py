"""Notebook agent (issue 22): a suite of notebook tasks run headless against the real server's
OpenAI route, as the sidebar's Agent mode runs them (same tools, same system prompt, same
loop), with every proposal accepted.

    python bench/agent.py [--model stand-in] [--steps 8] [--max-tokens 256]
                          [--record /tmp/agent_prompts.json] [--url URL --token T]
    python bench/agent.py --replay /tmp/agent_prompts.json [--model minicpm-2b]

Starts `jupyter server` with minicpm_server (or uses --url), then per task: the loop's
requests (POST /minicpm/v1/chat/completions with tools), each call validated as the browser
validates it (tool known, arguments a JSON object of the schema's types, cell numbers in range),
the accepted changes applied to an nbformat notebook in Python (run_cell and read_variable
answer that the bench has no kernel). Reports % of tool calls valid for their schema and % also
valid for the notebook (cell numbers in range), steps and seconds per task,
tokens of tool schema per request (prompt tokens with tools minus without); --record writes
every request body (JSON) so the same prompts can be replayed on another model (--replay:
time per agent step; prefill of the tool schema should come from the prompt cache after the
first request).

The tools and the system prompt are read from labextension/src/agent/tools.json, the file
the sidebar imports; validate() follows tools.ts's validateCall (schema types, enum,
minimum, cell numbers in range) and outline() loop.ts's notebookOutline (without truncation:
the tasks' notebooks are small).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
from server import start_server  # bench/server.py: jupyter server + minicpm_server subprocess

TOKEN = "bench"
# The sidebar's own system prompt and tools (one source: tools.ts imports the same file).
SPEC_PATH = Path(__file__).resolve().parent.parent / "labextension/src/agent/tools.json"
SPEC = json.loads(SPEC_PATH.read_text())
TOOLS: list[dict[str, Any]] = SPEC["tools"]
SYSTEM: str = SPEC["system"]


def request_text(outline_text: str, request: str) -> str:
    """tools.ts requestText: the notebook goes in the user turn (one pass over the template)."""
    return re.sub(r"\{(outline|request)\}",
                  lambda m: outline_text if m.group(1) == "outline" else request, SPEC["request"])


def relayout(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation recorded before the outline moved out of the system text → today's."""
    head = f"{SYSTEM}\n\nThe notebook:\n"
    first = messages[0].get("content") or ""
    if messages[0].get("role") != "system" or not first.startswith(head):
        return messages
    out = [{"role": "system", "content": SYSTEM}, *messages[1:]]
    user = next(i for i, m in enumerate(out) if m["role"] == "user")
    out[user] = {**out[user], "content": request_text(first[len(head):], out[user]["content"])}
    return out

TASKS: list[tuple[str, list[str], str]] = [
    ("rename", ["data = [1, 2, 3]", "total = sum(data)", "print(total / len(data))"],
     "Rename the variable data to values in every cell."),
    ("nameerror", ["import math", "print(radius * 2)"], "Cell 2 fails with NameError: name 'radius' "
     "is not defined. Fix it by defining radius = 3 first."),
    ("plot", ["import pandas as pd", "df = pd.DataFrame({'x': [1, 2, 3], 'y': [2, 4, 8]})"],
     "Add a cell after the DataFrame that plots y against x."),
    ("docstring", ["def area(w, h):\n    return w * h"], "Add a docstring to the function."),
    ("split", ["import numpy as np\na = np.arange(10)\nb = a ** 2\nprint(b.sum())"],
     "Split cell 1 into one cell for the import and one for the rest."),
    ("markdown", ["x = 1"], "Insert a Markdown title cell '# Analysis' at the top."),
    ("delete", ["x = 1", "print('debug')", "y = x + 1"], "Delete the debug print cell."),
    ("typo", ["prnt('hello')"], "Fix the typo in cell 1."),
    ("fstring", ["name = 'Ada'", "print('Hello ' + name)"], "Use an f-string in cell 2."),
    ("comment", ["for i in range(3):\n    print(i)"], "Add a comment explaining the loop."),
    ("loop", ["print(1)", "print(2)", "print(3)"], "Replace the three cells with one loop cell."),
    ("import", ["df = pd.read_csv('a.csv')"], "The pandas import is missing; add it in a new first cell."),
]


def outline(nb: Any) -> str:
    parts = [f"# cell {i + 1} ({c.cell_type})\n{c.source[:1200]}" for i, c in enumerate(nb.cells)]
    return "\n\n".join(parts) or "(the notebook is empty)"


def validate(name: Any, raw: Any, n: int) -> tuple[dict[str, Any] | None, str | None]:
    """The browser's validateCall: (arguments, None) or (None, why)."""
    tool = next((t["function"] for t in TOOLS if t["function"]["name"] == name), None)
    if tool is None:
        return None, f"unknown tool {str(name)[:40]!r}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None, "arguments are not valid JSON"
    props, required = tool["parameters"]["properties"], tool["parameters"]["required"]
    if not isinstance(args, dict):
        return None, "arguments must be a JSON object"
    if set(args) - set(props) or set(required) - set(args):
        return None, "wrong arguments"
    for k, v in args.items():
        want = props[k]["type"]
        if want == "integer" and (not isinstance(v, int) or isinstance(v, bool)):
            return None, f"{k} must be an integer"
        if want == "integer" and v < props[k].get("minimum", v):
            return None, f"{k} {v} is out of range (numbers start at {props[k]['minimum']})"
        if want == "string" and not isinstance(v, str):
            return None, f"{k} must be a string"
        if want == "string" and len(v) > props[k].get("maxLength", len(v)):
            return None, f"{k} is longer than {props[k]['maxLength']} characters"
        if "enum" in props[k] and v not in props[k]["enum"]:
            return None, f"{k} must be one of {props[k]['enum']}"
    limit = n + 1 if name == "insert_cell" else n
    for k in ("cell", "first", "position"):
        if k in args and args[k] > limit:
            return None, f"{k} {args[k]} is out of range (1 to {limit})"
    return args, None


def execute(nb: Any, name: str, a: dict[str, Any]) -> str:
    """Apply one validated call to the notebook, accepting every proposal."""
    cells = nb.cells
    if name == "read_cells":
        return "\n\n".join(f"# cell {i + 1} ({c.cell_type})\n{c.source}"
                           for i, c in enumerate(cells) if a["first"] <= i + 1 <= a["last"]) or "(no cells)"
    if name == "edit_cell":
        cells[a["cell"] - 1].source = a["source"]
        return f"accepted: cell {a['cell']} now has the new source"
    if name == "insert_cell":
        new = (nbformat.v4.new_markdown_cell if a["type"] == "markdown" else nbformat.v4.new_code_cell)(a["source"])
        cells.insert(a["position"] - 1, new)
        return f"accepted: inserted as cell {a['position']} of {len(cells)}"
    if name == "delete_cell":
        del cells[a["cell"] - 1]
        return f"accepted: cell deleted; the notebook now has {len(cells)} cells"
    return "(the bench has no kernel: nothing ran)"


def post(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url + "/minicpm/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=600).read())


def run_task(url: str, token: str, task: tuple[str, list[str], str], args: Any,
             record: list[dict[str, Any]]) -> dict[str, Any]:
    key, sources, request = task
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": request_text(outline(nb), request)}]
    calls = valid = schema_ok = steps = 0
    step_s: list[float] = []
    t0 = time.perf_counter()
    end = "step-limit"
    for step in range(args.steps):
        choice = "required" if args.tool_choice == "required" or (
            args.tool_choice == "first" and step == 0) else "auto"  # as loop.ts toolChoiceFor
        body = {"messages": messages, "tools": TOOLS, "tool_choice": choice, "temperature": 0,
                "max_tokens": args.max_tokens, "stream": False}
        record.append({"task": key, "body": json.loads(json.dumps(body))})
        s0 = time.perf_counter()
        msg = post(url, token, body)["choices"][0]["message"]
        step_s.append(time.perf_counter() - s0)
        steps += 1
        tcs = msg.get("tool_calls") or []
        if not tcs:
            end = "answered"
            break
        messages.append({"role": "assistant", "content": msg.get("content"), "tool_calls": tcs})
        n = len(nb.cells)
        for c in tcs:
            calls += 1
            a, err = validate(c["function"]["name"], c["function"]["arguments"], n)
            valid += err is None
            schema_ok += err is None or "out of range" in err  # well-formed, wrong cell number
            out = f"error: {err}" if err else execute(nb, c["function"]["name"], a or {})
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": out})
    return {"task": key, "steps": steps, "seconds": round(time.perf_counter() - t0, 2),
            "step_s_first": round(step_s[0], 2), "step_s_later": round(statistics.median(step_s[1:]), 2)
            if len(step_s) > 1 else None, "calls": calls, "schema_valid": schema_ok, "valid": valid, "end": end,
            "cells_after": len(nb.cells)}


def schema_tokens(url: str, token: str) -> int:
    """Prompt tokens the tools add to a request (with minus without)."""
    base = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}],
            "max_tokens": 1, "temperature": 0}
    with_tools = post(url, token, {**base, "tools": TOOLS, "tool_choice": "auto"})  # "none" drops them
    without = post(url, token, base)
    return with_tools["usage"]["prompt_tokens"] - without["usage"]["prompt_tokens"]


def reused_tokens(url: str, token: str) -> int:
    """The prompt cache's running count of prompt tokens reused (GET /minicpm/status)."""
    req = urllib.request.Request(url + "/minicpm/status", headers={"Authorization": f"token {token}"})
    status = json.loads(urllib.request.urlopen(req, timeout=60).read())
    return int(((status.get("cache") or {}).get("prompt_cache") or {}).get("tokens_reused", 0))


def replay(url: str, token: str, path: str, tasks: int) -> None:
    """Time every recorded request on the server's model: a task's first step (a new notebook
    in the system text) against its later steps (the conversation so far comes from the prompt
    cache). The recorded conversations are kept; the tools and the layout are today's
    (tools.json; an older record's outline moves from the system text to the user turn)."""
    records = json.load(open(path))
    keep = list(dict.fromkeys(r["task"] for r in records))[:tasks]
    records = [r for r in records if r["task"] in keep]
    load = open("/proc/loadavg").read().split()[:3]
    rows: list[dict[str, Any]] = []
    print(f"{'task':<10} {'step':<5} {'prompt':>6} {'cached':>6} {'ttft s':>7} {'out':>4} "
          f"{'tok/s':>6} {'step s':>7}", flush=True)
    for i, r in enumerate(records):
        first = i == 0 or records[i - 1]["task"] != r["task"]
        before = reused_tokens(url, token)
        s0 = time.perf_counter()
        body = {**r["body"], "tools": TOOLS, "messages": relayout(r["body"]["messages"])}
        usage = post(url, token, body)["usage"]
        row = {"task": r["task"], "step": "first" if first else "later",
               "prompt_tokens": usage["prompt_tokens"], "cached": reused_tokens(url, token) - before,
               "ttft_s": round(usage.get("time_to_first_token") or 0.0, 2),
               "completion_tokens": usage["completion_tokens"],
               "decode_tok_s": usage.get("tokens_per_second"), "step_s": round(time.perf_counter() - s0, 2)}
        rows.append(row)
        print(f"{row['task']:<10} {row['step']:<5} {row['prompt_tokens']:>6} {row['cached']:>6} "
              f"{row['ttft_s']:>7} {row['completion_tokens']:>4} {row['decode_tok_s']!s:>6} "
              f"{row['step_s']:>7}", flush=True)

    def med(step: str, key: str) -> float | None:
        vals = [x[key] for x in rows if x["step"] == step]
        return round(statistics.median(vals), 2) if vals else None

    print(json.dumps({"summary": {
        "requests": len(rows), "tasks": keep, "loadavg_before": load,
        "loadavg_after": open("/proc/loadavg").read().split()[:3],
        "very_first_step_s": rows[0]["step_s"] if rows else None,
        **{f"{step}_{key}_median": med(step, key) for step in ("first", "later")
           for key in ("step_s", "ttft_s", "cached", "prompt_tokens", "decode_tok_s")}},
        "rows": rows}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stand-in")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", default="/tmp/agent_prompts.json")
    ap.add_argument("--tool-choice", default="first", choices=["first", "auto", "required"],
                    help="as the sidebar's agentToolChoice: first (step 1 must call a tool), "
                         "auto, or required (a call every step: validity)")
    ap.add_argument("--tasks", type=int, default=len(TASKS), help="run the first N tasks")
    ap.add_argument("--replay")
    ap.add_argument("--url")
    ap.add_argument("--token", default=TOKEN)
    args = ap.parse_args()
    proc = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        proc, url = start_server(args.model, args.n_ctx, args.threads, 1)
    try:
        if args.replay:
            replay(url, args.token, args.replay, args.tasks)
            return
        load = open("/proc/loadavg").read().split()[:3]
        tokens = schema_tokens(url, args.token)
        record: list[dict[str, Any]] = []
        print(f"tool schema: {tokens} prompt tokens per request", flush=True)
        print(f"{'task':<10} {'steps':>5} {'s':>7} {'1st step s':>10} {'later s':>8} {'calls':>5} "
              f"{'schema':>6} {'valid':>5} end", flush=True)
        rows = []
        for t in TASKS[:args.tasks]:
            r = run_task(url, args.token, t, args, record)
            rows.append(r)
            print(f"{r['task']:<10} {r['steps']:>5} {r['seconds']:>7} {r['step_s_first']:>10} "
                  f"{str(r['step_s_later']):>8} {r['calls']:>5} {r['schema_valid']:>6} {r['valid']:>5} {r['end']}", flush=True)
            with open(args.record, "w") as f:  # after every task: a cut-short run keeps its prompts
                json.dump(record, f)
        calls = sum(r["calls"] for r in rows)
        summary = {"model": args.model, "tool_choice": args.tool_choice, "steps_limit": args.steps,
                   "max_tokens": args.max_tokens, "tasks": len(rows), "tool_calls": calls,
                   "schema_valid_pct": round(100 * sum(r["schema_valid"] for r in rows) / calls, 1)
                   if calls else None,
                   "valid_pct": round(100 * sum(r["valid"] for r in rows) / calls, 1) if calls else None,
                   "steps_mean": round(statistics.mean(r["steps"] for r in rows), 2),
                   "seconds_mean": round(statistics.mean(r["seconds"] for r in rows), 2),
                   "schema_tokens": tokens, "schema_chars": len(json.dumps(TOOLS)),
                   "loadavg_before": load, "loadavg_after": open("/proc/loadavg").read().split()[:3],
                   "record": os.path.abspath(args.record)}
        print(json.dumps({"summary": summary, "tasks": rows}))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
