"""How long the kernel takes to describe the user's variables (issue: ≤ 100 ms for 200).

A namespace of 200 variables (DataFrames 1,000×8, float arrays 1,000×100, dicts of 100 keys,
lists and strings) is described three ways, interleaved round by round so machine noise hits all
alike:
- ``list``: ``list_variables`` (the sidebar's picker: one line each),
- ``describe``: ``variable_context`` of all 200 (full descriptions, DataFrame heads included),
- ``repr`` (the peer): plain ``repr()`` of every value, what a naive inspector would send.

    .venv/bin/python bench/inspect_vars.py [--rounds 9] [--json]

Prints a table (median ms, ratio to the peer) and, with --json, one JSON object.

``--quality [--model stand-in] [--record prompts.json]``: twelve notebook tasks ("total revenue
by region", "average age of records"…) asked with and without the variables' descriptions;
each answer's first code block runs on a copy of the task's variables, and the table counts
NameError / KeyError / AttributeError (the errors of a model guessing names) and other
errors. ``--record`` writes every prompt and answer so they can be replayed on real MiniCPM
weights. The stand-in (135M) writes weak code either way: its numbers say little about
MiniCPM.

``--defuse``: the browser half (labextension/src/variables.ts, compiled with the workspace's
tsc into a temporary folder, run by node): def-use for the last cell of a 200-cell notebook,
cold (every cell scanned) and warm (cached scans), 15 rounds (issue: ≤ 30 ms)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel_ext"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from minicpm_magics.inspect_vars import approx_tokens, list_variables, variable_context  # noqa: E402
from notebook_cells import CELL_KINDS_JS  # noqa: E402


def namespace(n: int = 200) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ns: dict[str, Any] = {}
    for i in range(n):
        kind = i % 4
        if kind == 0:
            ns[f"df_{i}"] = pd.DataFrame({
                "region": rng.choice(["north", "south", "east", "west"], 1000),
                **{f"m{j}": rng.random(1000) for j in range(6)},
                "when": pd.date_range("2024-01-01", periods=1000, freq="h")})
        elif kind == 1:
            ns[f"arr_{i}"] = rng.random((1000, 100))
        elif kind == 2:
            ns[f"cfg_{i}"] = {f"key_{k}": [k, str(k)] for k in range(100)}
        else:
            ns[f"items_{i}"] = [f"item {k}" for k in range(1000)] if i % 8 == 3 else "text " * 400
    return ns


def run(rounds: int) -> dict[str, Any]:
    ns = namespace()
    names = list(ns)

    def list_all() -> int:
        return len(list_variables(ns))

    def describe_all() -> int:
        found, _ = variable_context(names, ns, each_tokens=512, total_tokens=10**9)
        return sum(v.tokens for v in found)

    def repr_all() -> int:
        return sum(approx_tokens(repr(v)) for v in ns.values())

    cases = {"list": list_all, "describe": describe_all, "repr": repr_all}
    times: dict[str, list[float]] = {k: [] for k in cases}
    sizes: dict[str, int] = {}
    for f in cases.values():
        f()  # warm up (pandas' formatting code paths)
    for r in range(rounds):
        order = list(cases) if r % 2 == 0 else list(reversed(cases))  # alternate who goes first
        for k in order:
            t0 = time.perf_counter()
            sizes[k] = cases[k]()
            times[k].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"variables": len(ns), "rounds": rounds, "median_ms": med,
            "min_ms": {k: min(v) for k, v in times.items()},
            "ratio_to_repr": {k: med[k] / med["repr"] for k in med},
            "tokens": {"describe": sizes["describe"], "repr": sizes["repr"]},
            "listed": sizes["list"]}


# --- quality: do descriptions stop the model guessing names? ------------------------------------
TASKS: list[tuple[str, str, str]] = [  # (setup code, variables, request)
    ("sales = pd.DataFrame({'Region': ['north', 'south', 'north'], 'rev_usd': [10.0, 20.0, 5.0]})",
     "sales", "Compute the total revenue per region from the DataFrame sales."),
    ("items = pd.DataFrame({'unit_price': [2.5, 4.0], 'qty': [3, 1]})",
     "items", "Add a column to items with the line total (price times quantity)."),
    ("config = {'learning_rate': 0.01, 'n_epochs': 5, 'batch': 32}",
     "config", "Print the number of epochs stored in config."),
    ("people = [{'full_name': 'Ada', 'years': 36}, {'full_name': 'Alan', 'years': 41}]",
     "people", "Print the average age of the people in the list people."),
    ("img = np.zeros((32, 32, 3), dtype='uint8')",
     "img", "Print the mean of the red channel of the image array img."),
    ("users = pd.DataFrame({'joined': pd.to_datetime(['2023-05-01', '2024-02-03']), "
     "'uid': [1, 2]})", "users", "Count the users in users who signed up in 2024."),
    ("temps = pd.Series([3.5, 7.25, -1.0], name='celsius')",
     "temps", "Print the maximum temperature in temps."),
    ("orders = pd.DataFrame({'cust': [1, 2, 1], 'total': [5.0, 7.0, 1.0]})\n"
     "customers = pd.DataFrame({'cid': [1, 2], 'label': ['A', 'B']})",
     "orders,customers", "Sum the order totals per customer name (join orders and customers)."),
    ("class Model:\n    def __init__(self):\n        self.weights = [0.5, -1.2]\nmodel = Model()",
     "model", "Print the coefficients of model."),
    ("scores = pd.DataFrame({'student': ['a', 'b'], 'maths': [90, 75], 'reading': [60, 88]})",
     "scores", "Which student in scores has the highest math score? Print the name."),
    ("counts = {'the': 10, 'cat': 3, 'sat': 5}",
     "counts", "Print the two most common words in counts."),
    ("log = pd.DataFrame({'ts': [1, 2, 3], 'lvl': ['INFO', 'ERROR', 'ERROR'], 'text': ['a', 'b', 'c']})",
     "log", "How many ERROR lines are there in log? Print the number."),
]
GUESSING = (NameError, KeyError, AttributeError)


class _TooLong(Exception):
    pass


def _run_code(code: str, ns: dict[str, Any], limit_s: int = 5) -> str:
    """Run an answer's code on the task's variables; its outcome. A model's loop that never
    ends is stopped by an alarm after ``limit_s`` (outcome "other")."""
    import contextlib
    import io
    import signal

    def stop(*_: Any) -> None:
        raise _TooLong

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(limit_s)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(compile(code, "<answer>", "exec"), ns)  # noqa: S102 - a bench on toy data
    except GUESSING as e:
        return type(e).__name__
    except SyntaxError:
        return "SyntaxError"
    except BaseException:  # noqa: BLE001 - a bad answer (or _TooLong) must not stop the bench
        return "other"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return "ok"


def quality(model: str, record: str | None) -> dict[str, Any]:
    from minicpm_magics.render import extract_code

    import minicpm
    from minicpm import prompts

    engine = minicpm.load(model, n_ctx=2048, n_threads=1)  # 1: the machine is shared
    system = (f"{prompts.SYSTEM_PROMPT} Answer with only one fenced Python code block. The "
              "variables named in the question already exist: use them, do not recreate them.")
    rows, log = [], []
    for setup, names, request in TASKS:
        base: dict[str, Any] = {"pd": pd, "np": np}
        exec(setup, base)  # noqa: S102
        found, _ = variable_context(names.split(","), base, each_tokens=512, total_tokens=1024)
        part = {"kind": "text", "label": "variables in the kernel",
                "text": "\n".join(v.text for v in found)}
        row = {"request": request}
        for cond, parts in (("without", []), ("with", [part])):
            print(f"  {cond:8} {request}", file=sys.stderr, flush=True)
            user, _ = prompts.build_user_message(request, parts)
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            answer = "".join(engine.chat(messages, max_tokens=160, temperature=0, seed=1))
            ns = dict(base)
            row[cond] = _run_code(extract_code(answer), ns)
            log.append({"task": request, "condition": cond, "messages": messages,
                        "answer": answer, "outcome": row[cond]})
        rows.append(row)
    label = engine.info.label
    engine.close()
    if record:
        Path(record).write_text(json.dumps({"model": model, "tasks": log}, indent=1))
    summary = {}
    for cond in ("without", "with"):
        outs = [r[cond] for r in rows]
        summary[cond] = {"guessing_errors": sum(o in ("NameError", "KeyError", "AttributeError")
                                                for o in outs),
                         "ok": outs.count("ok"),
                         "other_errors": sum(o in ("other", "SyntaxError") for o in outs)}
    return {"model": label, "tasks": len(rows), "rows": rows, "summary": summary}


DEFUSE_JS = r"""
const v = require('./variables.js');
""" + CELL_KINDS_JS + r"""const cells = Array.from({length: 200}, (_, i) => kinds[i % 4](i));
const cold = [];
for (let r = 0; r < 15; r++) {
  const t0 = process.hrtime.bigint();
  const res = v.definitionsFor(cells, 199, new v.NamesCache());
  v.fitVariables([], res.defined.map(d => ({name: d.name, text: d.name, tokens: 40})), 2048);
  cold.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
cold.sort((a, b) => a - b);
const warm = new v.NamesCache(); v.definitionsFor(cells, 199, warm);
const t1 = process.hrtime.bigint();
for (let k = 0; k < 100; k++) v.definitionsFor(cells, 199 - (k % 50), warm);
console.log(JSON.stringify({cells: 200, cold_median_ms: cold[7], cold_min_ms: cold[0],
  warm_ms: Number(process.hrtime.bigint() - t1) / 1e6 / 100}));
"""


def defuse() -> dict[str, Any]:
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["npx", "tsc", "--outDir", out, "--module", "commonjs", "--target", "ES2020",
                        "--moduleResolution", "node", "--skipLibCheck", "--lib", "ES2020,DOM",
                        "src/variables.ts", "src/protocol.ts"],
                       cwd=root / "labextension", check=True)
        (Path(out) / "bench.js").write_text(DEFUSE_JS)
        r = subprocess.run(["node", "bench.js"], cwd=out, check=True, capture_output=True,
                           text=True)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--model", default="stand-in")
    ap.add_argument("--record", default=None)
    ap.add_argument("--defuse", action="store_true")
    args = ap.parse_args()
    if args.defuse:
        d = defuse()
        print(f"def-use, {d['cells']} cells: cold median {d['cold_median_ms']:.1f} ms "
              f"(min {d['cold_min_ms']:.1f}), warm {d['warm_ms']:.2f} ms a call")
        if args.json:
            print(json.dumps(d))
        return
    if args.quality:
        q = quality(args.model, args.record)
        print(f"{q['model']}: {q['tasks']} tasks, answer code run on the task's variables")
        print(f"{'task':70} {'without':>14} {'with vars':>14}")
        for r in q["rows"]:
            print(f"{r['request'][:70]:70} {r['without']:>14} {r['with']:>14}")
        for cond, v in q["summary"].items():
            print(f"{cond:8} Name/Key/AttributeError {v['guessing_errors']:2}  ok {v['ok']:2}  "
                  f"other errors {v['other_errors']:2}")
        if args.json:
            print(json.dumps(q))
        return
    res = run(args.rounds)
    print(f"{res['variables']} variables, {res['rounds']} interleaved rounds")
    print(f"{'case':10} {'median ms':>10} {'min ms':>8} {'× repr':>7}  tokens (≈)")
    for k, ms in res["median_ms"].items():
        tok = res["tokens"].get(k, "")
        print(f"{k:10} {ms:10.1f} {res['min_ms'][k]:8.1f} {res['ratio_to_repr'][k]:7.2f}  {tok}")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
