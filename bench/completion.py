"""Inline completion as a person types: replay the code cells of three notebooks against a
real server, one keystroke every 120 ms, with requests fired the way the JupyterLab provider
fires them, and a sidebar chat asked now and then.

    python bench/completion.py [--model stand-in] [--synthetic minicpm-2b] [--cells 2]
                               [--json bench/results/completion.json]

Typing model: each notebook's earlier cells are already there; the last ``--cells`` code cells
are typed character by character (the editor supplies indentation after Enter), one keystroke
per ``--keystroke-ms``, with a ``--think-ms`` pause after ``(``, ``.`` and ``=`` and a
``--line-pause-ms`` pause at the end of every line (reading the suggestion). As in JupyterLab:
no request when the line before the cursor is blank; after ``--debounce-ms`` without a
keystroke, a request; every keystroke stops the request in flight (a ``stop`` frame). Our
provider also asks on the fresh line after Enter (``--enter-pause-ms`` there; ``block`` mode
after a block opener) and keeps a suggestion that starts with the typed newline; the table's
last column counts the keystrokes after Enter that got a suggestion (``--no-fresh-line``:
the provider before it did that).

Chat: before each typed cell (nobody typing) and every ``--chat-every-s`` while typing, the
same kind of sidebar question (a fresh one each time: no cache help), first token timed.
Both kinds alternate in one run, so the ratio is a same-machine comparison.

Prints a table and writes JSON. Timings are from the client's clock (sent → first ``partial``
frame, → ``done``) except the engine's first token and how soon a stopped request freed
the engine, which the server reports (``timing`` in the done frame; docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from completion_replay import HERE, engine_only, run_model
from completion_report import fmt, print_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="stand-in", help="'' to skip; the stand-in by default")
    ap.add_argument("--synthetic", default=None, choices=["minicpm-2b", "minicpm-1b"],
                    help="also run a random-weight MiniCPM GGUF of that shape (bench/llamacpp.py)")
    ap.add_argument("--qtype", default="q4_0")
    ap.add_argument("--cells", type=int, default=2, help="code cells typed per notebook")
    ap.add_argument("--keystroke-ms", type=float, default=120)
    ap.add_argument("--think-ms", type=float, default=600)
    ap.add_argument("--line-pause-ms", type=float, default=1500)
    ap.add_argument("--debounce-ms", type=float, default=250)
    ap.add_argument("--enter-pause-ms", type=float, default=600,
                    help="pause after Enter (a look at the new line)")
    ap.add_argument("--no-fresh-line", action="store_true",
                    help="replay the provider without its fresh-line trigger (before issue 25)")
    ap.add_argument("--mode", default="line", choices=["line", "statement", "block"])
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--chat-every-s", type=float, default=8.0)
    ap.add_argument("--chat-tokens", type=int, default=4)
    ap.add_argument("--peer", action="store_true",
                    help="also type every cell with the naive client (interleaved)")
    ap.add_argument("--naive-chars", type=int, default=3500)
    ap.add_argument("--engine-only", action="store_true",
                    help="in-process keystroke replay, no server (see engine_only)")
    ap.add_argument("--keys", type=int, default=40, help="keystrokes per notebook, engine only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--json", default=str(HERE / "results" / "completion.json"))
    args = ap.parse_args()
    models: list[tuple[str, str]] = []
    if args.model:
        models.append((args.model, "SmolLM2-135M (stand-in)" if args.model == "stand-in"
                       else args.model))
    if args.synthetic:
        from minicpm.bench import synthetic_gguf

        models.append((synthetic_gguf(args.synthetic, args.qtype),
                       f"{args.synthetic} shapes, random {args.qtype.upper()}"))
    rows = []
    for model, label in models:
        print(f"== {label}", file=sys.stderr)
        if args.engine_only:
            rows.append(engine_only(model if model != "stand-in" else None, label, args))
            print(json.dumps({k: v for k, v in rows[-1].items()}), file=sys.stderr)
        else:
            rows.extend(run_model(model, label, args, args.peer))
    if not args.engine_only:
        print_table(rows)
    else:
        print("| model | cold prefill of the notebook ms | first token per keystroke p50 / p95 "
              "ms | one line p50 / p95 ms | prompt reused | warm / cold |")
        print("| --- |" + " ---: |" * 5)
        for r in rows:
            print(f"| {r['model']} | {fmt(statistics.median(r['cold_prefill_ms']))} "
                  f"| {fmt(r['first_token_ms']['p50'])} / {fmt(r['first_token_ms']['p95'])} "
                  f"| {fmt(r['one_line_ms']['p50'])} / {fmt(r['one_line_ms']['p95'])} "
                  f"| {fmt(100 * (r['reused_share'] or 0))} % "
                  f"| {fmt(r['warm_over_cold'], 3)} |")
    out = {"args": vars(args), "results": rows}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
