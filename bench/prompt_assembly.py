"""Fitting notebook context into the window: the assembler before issue 10 (re-tokenize the
whole context once per cut: quadratic) vs ``minicpm.prompts.build_user_message`` now (one
tokenization per budget decision), on the real stand-in tokenizer, interleaved.

    python bench/prompt_assembly.py [--parts 100 1000 5000 20000] [--runs 3] [--old-cap 30]

Each row: N text parts of ~90 characters (a DataFrame's rows, say) and one question, the
budget what a 1024-token context leaves. Prints a table and a JSON line. The old algorithm is
stopped after --old-cap seconds (its time and tokenizer calls are then lower bounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import minicpm
from minicpm import prompts


def old_build(question: str, parts: Sequence[Mapping[str, Any]], count: Callable[[str], int],
              budget: int, cap_s: float) -> tuple[str, bool, bool]:
    """The pre-issue-10 loop (prompts.py at 01a6504), with a time cap. Returns
    (text, truncated, finished)."""
    blocks = [prompts.format_part(p) for p in parts]
    truncated = False
    t0 = time.perf_counter()
    while blocks and count("\n\n".join(blocks)) > budget:
        if time.perf_counter() - t0 > cap_s:
            return "", True, False
        i = max(range(len(blocks)), key=lambda k: len(blocks[k]))
        if len(blocks[i]) < 200:
            blocks.pop(i)
        else:
            blocks[i] = blocks[i][: len(blocks[i]) * 3 // 4] + "\n…[truncated]"
        truncated = True
    return "\n\n".join(blocks) + "\n\n" + question, truncated, True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, nargs="+", default=[100, 1000, 5000, 20000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--old-cap", type=float, default=30.0)
    args = ap.parse_args()

    engine = minicpm.load(n_ctx=1024, n_threads=2)
    calls = 0

    def count(text: str) -> int:
        nonlocal calls
        calls += 1
        return engine.count_tokens(text)

    q = "Summarise the rows."
    msgs = [{"role": "system", "content": prompts.SYSTEM_PROMPT}, {"role": "user", "content": q}]
    budget = (1024 - prompts.output_reserve(1024, 256)
              - engine.count_tokens(engine.render(msgs), add_bos=True) - 8)
    rows = []
    for n in args.parts:
        parts = [{"kind": "text", "label": f"row {i}", "text": f"value {i} " * 8}
                 for i in range(n)]
        old_t, new_t = [], []
        old_calls = new_calls = 0
        old_done = True
        for _ in range(args.runs):  # interleaved: the machine's noise hits both alike
            calls = 0
            t0 = time.perf_counter()
            _, _, finished = old_build(q, parts, count, budget, args.old_cap)
            old_t.append(time.perf_counter() - t0)
            old_calls, old_done = calls, old_done and finished
            calls = 0
            t0 = time.perf_counter()
            text, _ = prompts.build_user_message(q, parts, count, budget)
            new_t.append(time.perf_counter() - t0)
            new_calls = calls
            assert engine.count_tokens(text) <= budget + 64  # the question and note fit too
            if not finished:
                break  # one capped run of the old loop is enough to show its growth
        rows.append({"parts": n, "budget_tokens": budget,
                     "old_s": statistics.median(old_t), "old_calls": old_calls,
                     "old_finished": old_done,
                     "new_s": statistics.median(new_t), "new_calls": new_calls,
                     "speedup": statistics.median(old_t) / statistics.median(new_t)})
    engine.close()
    print(f"{'parts':>7} {'old s':>9} {'old calls':>10} {'new s':>8} {'new calls':>10} "
          f"{'old/new':>8}")
    for r in rows:
        flag = "" if r["old_finished"] else ">"
        print(f"{r['parts']:>7} {flag + format(r['old_s'], '.3f'):>9} "
              f"{flag + str(r['old_calls']):>10} {r['new_s']:>8.3f} {r['new_calls']:>10} "
              f"{flag + format(r['speedup'], '.0f'):>8}")
    print(json.dumps({"bench": "prompt_assembly", "rows": rows}))


if __name__ == "__main__":
    main()
