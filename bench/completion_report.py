"""The completion benchmark's report: percentiles, the per-model summary and the table."""

from __future__ import annotations

import statistics
from typing import Any


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summarize(label: str, recs: list[dict[str, Any]], idle: list[float], typing: list[float],
              n_keys: int, elapsed: float, n_enter: int = 0) -> dict[str, Any]:
    frames = [r["frame"] for r in recs if r["frame"] and r["frame"]["type"] == "done"]
    naive = [r for r in recs if r.get("naive") and r["frame"]]
    errors = [r["frame"] for r in recs if r["frame"] and r["frame"]["type"] == "error"]
    first = [(r["first"] - r["sent"]) * 1000 for r in recs if r["first"] is not None]
    complete = [(r["end"] - r["sent"]) * 1000 for r in recs
                if r["frame"] and r["frame"]["type"] == "done" and r["frame"]["text"]
                and not r["stopped"]]
    engine_first = [f["timing"]["first_token_ms"] for f in frames
                    if f["timing"].get("first_token_ms") is not None]
    cancelled = [f for f in frames if f["dropped"] == "cancelled"]
    free = [f["timing"]["free_ms"] for f in cancelled if f["timing"].get("free_ms") is not None]
    ran = [f for f in frames if f.get("usage")]
    stale = len([r for r in naive if r["stopped"]])  # naive: answers the client threw away
    prompt_tokens = sum(f["usage"]["prompt_tokens"] for f in ran)
    reused = [f["usage"]["reused_tokens"] for f in ran if f["usage"]["reused_tokens"] is not None]
    finished = [f for f in frames if f["dropped"] not in ("cancelled", "busy", "preempted")]
    shown = [f for f in finished if f["text"]]
    syntax = [f for f in finished if f["dropped"] == "syntax"]
    if naive:  # no filter on the server: check what the client would have shown
        from minicpm.completion import CompletionRequest, suggestion_parses

        done = [r for r in naive if not r["stopped"] and r["frame"]["text"]]
        bad = [r for r in done
               if not suggestion_parses(CompletionRequest(r["prefix"]), r["frame"]["text"])]
        shown, syntax = [r for r in done if r not in bad], bad
    # Keystrokes after Enter that got a suggestion: the fresh line's own request, or one kept
    # through the newline, finished with text to show before the next keystroke stopped it.
    enter_shown = [r for r in recs if r.get("enter_key") and not r["stopped"] and r["frame"]
                   and r["frame"]["type"] == "done"
                   and len(r["frame"]["text"] or "") > len(r.get("typed", ""))]
    return {
        "model": label, "keystrokes": n_keys, "seconds": round(elapsed, 1),
        "enter_keys": n_enter, "enter_suggested": len(enter_shown),
        "enter_share": len(enter_shown) / n_enter if n_enter else None,
        "requests": len(recs), "errors": len(errors),
        "first_ghost_ms": {"p50": pct(first, 50), "p95": pct(first, 95), "n": len(first)},
        "engine_first_token_ms": {"p50": pct(engine_first, 50), "p95": pct(engine_first, 95),
                                  "n": len(engine_first)},
        "one_line_ms": {"p50": pct(complete, 50), "p95": pct(complete, 95), "n": len(complete)},
        "prompt_tokens": prompt_tokens,
        "reused_share": (sum(reused) / prompt_tokens) if reused and prompt_tokens else None,
        "cancelled": len(cancelled) or stale,
        "free_ms": {"p50": pct(free, 50), "p95": pct(free, 95), "max": max(free, default=None)},
        "busy": sum(f["dropped"] == "busy" for f in frames),
        "preempted": sum(f["dropped"] == "preempted" for f in frames),
        "shown": len(shown), "dropped_syntax": len(syntax),
        "parse_share": len(shown) / (len(shown) + len(syntax)) if shown or syntax else None,
        "chat_ttft_idle_ms": statistics.median(idle) * 1000 if idle else None,
        "chat_ttft_typing_ms": statistics.median(typing) * 1000 if typing else None,
        "chat_slowdown": (statistics.median(typing) / statistics.median(idle))
        if idle and typing else None,
        "chat_samples": {"idle": len(idle), "typing": len(typing)},
    }


def fmt(v: Any, nd: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:.{nd}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("| model | requests (cancelled) | first ghost token p50 / p95 ms | engine first token "
            "p50 / p95 ms | one line p50 / p95 ms | prompt reused | engine free after stop "
            "p50 / max ms | parse | chat first token idle → typing ms (×) | after Enter |")
    print(head)
    print("| --- |" + " ---: |" * 9)
    for r in rows:
        print(f"| {r['model']} | {r['requests']} ({r['cancelled']}) "
              f"| {fmt(r['first_ghost_ms']['p50'])} / {fmt(r['first_ghost_ms']['p95'])} "
              f"| {fmt(r['engine_first_token_ms']['p50'])} / "
              f"{fmt(r['engine_first_token_ms']['p95'])} "
              f"| {fmt(r['one_line_ms']['p50'])} / {fmt(r['one_line_ms']['p95'])} "
              f"| {fmt(100 * r['reused_share'] if r['reused_share'] is not None else None)} % "
              f"| {fmt(r['free_ms']['p50'], 1)} / {fmt(r['free_ms']['max'], 1)} "
              f"| {fmt(100 * r['parse_share'] if r['parse_share'] is not None else None)} % "
              f"({r['shown']} shown) "
              f"| {fmt(r['chat_ttft_idle_ms'])} → {fmt(r['chat_ttft_typing_ms'])} "
              f"({fmt(r['chat_slowdown'], 2)}) "
              f"| {r.get('enter_suggested', 0)} of {r.get('enter_keys', 0)} |")
