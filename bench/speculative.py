"""Speculative decoding by prompt lookup: acceptance and speed on code-edit tasks, and the
verify-cost ratio on MiniCPM-2B shapes; the two together decide the default.

    python bench/speculative.py [MODEL] [--max-tokens 256] [--verify-model minicpm-2b]
                                [--skip-verify] [--json PATH]

1) On MODEL (default: the stand-in), five code-edit tasks over 40–80-line cells (add
   docstrings, rename, add type hints, fix an error, logging instead of print): greedy, in one
   process, interleaved per task: raw llama-cpp-python, ours with speculation off, ours with it
   on. Reports tok/s, acceptance, tokens per verify step, and whether the text is identical.
2) On the synthetic MiniCPM-2B Q4_0 file: the time of one decode call holding k tokens
   (k = 1, 2, 4, 8, 16) after a 512-token context, as a ratio to k = 1.
3) The estimated speedup on MiniCPM-2B: each task's recorded verify steps (draft length,
   accepted) priced with the ratios from 2): n_tokens / (plain steps + Σ ratio(k)).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

FUNCS = ("load", "clean", "merge", "summarize", "plot", "export", "validate", "normalize")


def cell(seed: int, n_funcs: int) -> str:
    """A notebook cell of plain, repetitive analysis code (40–80 lines)."""
    lines = ["import numpy as np", "import pandas as pd", ""]
    for i in range(n_funcs):
        name = FUNCS[(i + seed) % len(FUNCS)]
        lines += [
            f"def {name}_{seed}_{i}(df, column, threshold={i + 1}):",
            "    values = df[column].to_numpy()",
            "    mask = np.isfinite(values) & (values > threshold)",
            "    result = df.loc[mask].copy()",
            f"    result['{name}_score'] = result[column] * {i + 2} - threshold",
            f"    print('{name}', len(result), 'rows kept of', len(df))",
            f"    return result.sort_values('{name}_score')",
            "",
        ]
    lines += [f"frame = pd.read_csv('table_{seed}.csv')",
              f"out = {FUNCS[seed % len(FUNCS)]}_{seed}_0(frame, 'value')"]
    return "\n".join(lines)


TASKS = [
    ("docstrings", 0, 6, "Add a one-line docstring to every function. Return the whole cell."),
    ("rename", 1, 5, "Rename the variable `values` to `column_values` everywhere. Return the "
                     "whole cell."),
    ("type hints", 2, 7, "Add type hints (pd.DataFrame, str, float) to every function. Return "
                         "the whole cell."),
    ("fix error", 3, 6, "This cell fails with KeyError: 'value' because the column is called "
                        "'amount'. Fix it and return the whole cell."),
    ("logging", 4, 8, "Replace every print call with logging.info. Return the whole cell."),
]


def messages(task: tuple[str, int, int, str]) -> list[dict[str, str]]:
    _, seed, n, instruction = task
    return [{"role": "user", "content": f"```python\n{cell(seed, n)}\n```\n\n{instruction}"}]


def run_tasks(model: str | None, max_tokens: int, threads: int | None) -> dict[str, Any]:
    import llama_cpp

    import minicpm
    from minicpm.backends.llamacpp import physical_cores

    threads = threads or physical_cores()
    engine = minicpm.load(model, n_ctx=4096, n_threads=threads, speculative="on")
    b = engine.backend
    raw = llama_cpp.Llama(b.info.path, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    rows = []
    for ti, task in enumerate(TASKS):
        msgs = messages(task)
        ids = b.tokenize(engine.render(msgs), add_bos=True)
        res: dict[str, Any] = {"task": task[0], "prompt_tokens": len(ids),
                               "cell_lines": cell(task[1], task[2]).count("\n") + 1}
        order = ["raw", "off", "on"]
        order = order[ti % 3:] + order[:ti % 3]  # rotate who goes first
        for kind in order:
            if kind == "raw":
                raw.reset()
                first, n = None, 0
                for tok in raw.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.0):
                    if llama_cpp.llama_vocab_is_eog(raw._model.vocab, tok):
                        break
                    first = first or time.perf_counter()
                    n += 1
                    if n >= max_tokens:
                        break
                end = time.perf_counter()
                res["raw"] = {"tokens": n, "tps": (n - 1) / (end - first)}
                continue
            b.speculative = kind == "on"
            b.kv.forget()  # each run prefills the prompt itself, as raw does
            before = (b.spec_stats.steps, b.spec_stats.drafted, b.spec_stats.accepted,
                      b.spec_stats.plain_steps, len(b.spec_stats.trace))
            g = engine.chat(msgs, temperature=0, max_tokens=max_tokens)
            text = g.read()
            s = b.spec_stats
            r = {"tokens": g.usage.completion_tokens, "tps": g.usage.tokens_per_second,
                 "text": text}
            if kind == "on":
                r.update(steps=s.steps - before[0], drafted=s.drafted - before[1],
                         accepted=s.accepted - before[2], plain_steps=s.plain_steps - before[3],
                         trace=list(s.trace)[before[4]:])
            res[kind] = r
        on, off = res["on"], res["off"]
        res["same_text"] = on.pop("text") == off.pop("text")
        res["acceptance"] = on["accepted"] / on["drafted"] if on["drafted"] else 0.0
        res["speedup_on_over_off"] = on["tps"] / off["tps"] if off["tps"] else 0.0
        res["speedup_on_over_raw"] = on["tps"] / res["raw"]["tps"] if res["raw"]["tps"] else 0.0
        rows.append(res)
        print(f"  {task[0]}: on {on['tps']:.1f} tok/s, off {off['tps']:.1f}, raw "
              f"{res['raw']['tps']:.1f}, acceptance {res['acceptance']:.2f}", file=sys.stderr)
    engine.close()
    raw.close()
    return {"model": b.info.label, "tasks": rows}


def verify_cost(path: str, threads: int | None, ks: tuple[int, ...] = (1, 2, 4, 8, 16),
                repeats: int = 5, context: int = 256) -> dict[str, Any]:
    """Seconds for one decode call of k tokens after ``context`` tokens (median of repeats)."""
    import threading

    import minicpm

    engine = minicpm.load(path, backend="llama.cpp", n_ctx=2048, n_threads=threads)
    kv = engine.backend.kv
    ids = [int(x) for x in (list(range(1000, 1000 + context)))]
    kv.load_prompt(ids, threading.Event())
    times: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(repeats):
        for k in ks:
            t0 = time.perf_counter()
            kv.decode(list(range(2000, 2000 + k)), all_logits=True)
            times[k].append(time.perf_counter() - t0)
            kv.truncate(context)
    engine.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"context": context, "seconds": med, "ratio": {k: med[k] / med[1] for k in ks}}


def estimate(tasks: list[dict[str, Any]], ratio: dict[int, float]) -> list[dict[str, Any]]:
    """Price each task's verify steps with the bigger model's cost ratios (interpolated)."""
    ks = sorted(ratio)

    def cost(k: int) -> float:  # ratio of a (k+1)-token call: the last token plus k drafts
        n = k + 1
        lo = max([x for x in ks if x <= n], default=ks[0])
        hi = min([x for x in ks if x >= n], default=ks[-1])
        if hi == lo:
            return ratio[lo]
        return ratio[lo] + (ratio[hi] - ratio[lo]) * (n - lo) / (hi - lo)

    out = []
    for t in tasks:
        on = t["on"]
        steps = on["plain_steps"] + sum(cost(k) for k, _ in on["trace"])
        out.append({"task": t["task"], "est_speedup": on["tokens"] / steps if steps else 0.0})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--verify-model", default="minicpm-2b", choices=["minicpm-2b", "minicpm-1b"])
    p.add_argument("--skip-verify", action="store_true")
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "speculative.json"))
    a = p.parse_args()
    result: dict[str, Any] = run_tasks(a.model, a.max_tokens, a.threads)
    print(f"model: {result['model']}   greedy, max {a.max_tokens} tokens")
    print(f"{'task':11s} {'prompt':>6s} {'lines':>5s} {'raw tok/s':>9s} {'off tok/s':>9s} "
          f"{'on tok/s':>9s} {'on/raw':>6s} {'accept':>6s} {'tok/step':>8s} {'same':>5s}")
    for t in result["tasks"]:
        on = t["on"]
        per_step = on["tokens"] / max(1, on["steps"] + on["plain_steps"])
        print(f"{t['task']:11s} {t['prompt_tokens']:6d} {t['cell_lines']:5d} "
              f"{t['raw']['tps']:9.1f} {t['off']['tps']:9.1f} {on['tps']:9.1f} "
              f"{t['speedup_on_over_raw']:6.2f} {t['acceptance']:6.2f} {per_step:8.2f} "
              f"{t['same_text']!s:>5s}")
    if not a.skip_verify:
        from minicpm.bench import synthetic_gguf

        vc = verify_cost(synthetic_gguf(a.verify_model), a.threads)
        result["verify_cost"] = {a.verify_model: vc}
        print(f"verify cost on {a.verify_model} shapes (Q4_0), after {vc['context']} tokens: "
              + ", ".join(f"k={k}: {vc['seconds'][k] * 1000:.0f} ms ({vc['ratio'][k]:.2f}x)"
                          for k in vc["ratio"]))
        est = estimate(result["tasks"], vc["ratio"])
        result["estimated_speedup"] = {a.verify_model: est}
        print(f"estimated speedup on {a.verify_model}: " + ", ".join(
            f"{e['task']} {e['est_speedup']:.2f}x" for e in est))
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"wrote {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
