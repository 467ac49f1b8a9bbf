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
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ["sales_eda.py", "churn_model.py", "timeseries.py"]
TOKEN = "bench-completion"
TOPICS = ["pandas indexing", "matplotlib axes", "numpy broadcasting", "train/test splits",
          "rolling windows", "groupby aggregation", "logistic regression", "time zones"]


# --- inputs ------------------------------------------------------------------------------------


def read_cells(path: Path) -> list[dict[str, str]]:
    """A percent-format script (``# %%`` / ``# %% [markdown]``) → notebook cells."""
    cells: list[dict[str, str]] = []
    kind, lines = None, []
    for line in path.read_text().splitlines() + ["# %%"]:
        if line.startswith("# %%"):
            if kind is not None:
                src = "\n".join(lines).strip("\n")
                if kind == "markdown":
                    src = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#")
                                    for ln in src.splitlines())
                cells.append({"kind": kind, "source": src})
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    return cells


def keystrokes(code: str) -> list[tuple[str, bool]]:
    """(text after the keystroke, is it the last key of a line). Indentation comes with Enter,
    as the editor's auto-indent gives it."""
    out: list[tuple[str, bool]] = []
    typed = ""
    lines = code.split("\n")
    for li, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip(" "))]
        if li > 0:
            typed += "\n" + indent
            out.append((typed, False))
        for ci, ch in enumerate(line[len(indent):]):
            typed += ch
            out.append((typed, ci == len(line) - len(indent) - 1))
    return out


def jupyterlab_would_fire(text: str) -> bool:
    """JupyterLab's automatic inline request: not when the line before the cursor is blank."""
    return bool(text.rsplit("\n", 1)[-1].strip())


def after_enter(text: str) -> bool:
    """The keystroke was Enter: the cursor is on a fresh line (indentation only)."""
    return "\n" in text and not text.rsplit("\n", 1)[-1].strip()


def after_opener(text: str) -> bool:
    """The line above ends a block opener (labextension/src/freshLine.ts, comments aside)."""
    above = text.rsplit("\n", 1)[0].rsplit("\n", 1)[-1].split("#", 1)[0].rstrip()
    return above.endswith(":")


# --- server ------------------------------------------------------------------------------------


def start_server(model: str, n_ctx: int, threads: int) -> tuple[Any, str]:
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", "--ServerApp.open_browser=False",
         f"--MiniCPM.model={model}", f"--MiniCPM.n_ctx={n_ctx}", f"--MiniCPM.n_threads={threads}",
         "--MiniCPM.chats_dir=/tmp/minicpm-bench-chats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1500):
        try:
            req = urllib.request.Request(url + "/minicpm/status",
                                         headers={"Authorization": f"token {TOKEN}"})
            status = json.loads(urllib.request.urlopen(req, timeout=2).read())
            if status["state"] == "ready":
                return proc, url
            if status["state"] == "error":
                break
        except OSError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not become ready")


def connect(url: str, path: str) -> Any:
    return websocket.create_connection(url.replace("http", "ws", 1) + path,
                                       header=[f"Authorization: token {TOKEN}"])


class Inline:
    """The completion socket; a reader thread stamps frames as they arrive."""

    def __init__(self, url: str):
        self.ws = connect(url, "/minicpm/complete")
        self.recs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.seq = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                f = json.loads(self.ws.recv())
            except Exception:  # closed
                return
            now = time.perf_counter()
            with self.lock:
                rec = self.recs.get(str(f.get("id")))
                if rec is None:
                    continue
                if f["type"] in ("partial", "done"):
                    rec["text"] = f.get("text") or ""
                if f["type"] == "partial" and rec["first"] is None:
                    rec["first"] = now
                elif f["type"] in ("done", "error"):
                    rec["end"], rec["frame"] = now, f

    def send(self, prefix: str, cells: list[dict[str, str]], args: Any, label: str,
             mode: str | None = None) -> str:
        self.seq += 1
        rid = f"r{self.seq}"
        with self.lock:
            self.recs[rid] = {"sent": time.perf_counter(), "first": None, "end": None,
                              "frame": None, "stopped": False, "label": label, "prefix": prefix,
                              "text": ""}
        self.ws.send(json.dumps({"type": "complete", "id": rid, "prefix": prefix, "suffix": "",
                                 "cells": cells, "mode": mode or args.mode,
                                 "max_tokens": args.max_tokens}))
        return rid

    def stop(self, rid: str) -> None:
        with self.lock:
            rec = self.recs[rid]
            if rec["end"] is not None:
                return
            rec["stopped"] = True
        self.ws.send(json.dumps({"type": "stop", "id": rid}))

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(r["end"] is not None for r in self.recs.values()):
                    return
            time.sleep(0.02)


class Naive:
    """The peer: what a provider without our server side does. Each trigger is an ordinary
    streamed POST /minicpm/v1/completions (the same script text, the last ~1,024 tokens'
    worth of characters, stop at a line break), queued FIFO with chats; a keystroke only makes
    the client ignore the stale answer, nothing is cancelled on the server."""

    def __init__(self, url: str):
        self.url = url
        self.recs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.seq = 0

    def send(self, prefix: str, cells: list[dict[str, str]], args: Any, label: str,
             mode: str | None = None) -> str:
        from minicpm.completion import Cell, cell_text

        self.seq += 1
        rid = f"n{self.seq}"
        script = "".join(t + "\n\n" for t in (cell_text(Cell(c["kind"], c["source"]))
                                              for c in cells) if t) + prefix
        script = script[-args.naive_chars:]
        rec = {"sent": time.perf_counter(), "first": None, "end": None, "frame": None,
               "stopped": False, "label": label, "prefix": prefix, "naive": True}
        with self.lock:
            self.recs[rid] = rec
        body = json.dumps({"prompt": script, "max_tokens": args.max_tokens, "stop": ["\n"],
                           "temperature": 0, "stream": True}).encode()
        threading.Thread(target=self._run, args=(rec, body), daemon=True).start()
        return rid

    def _run(self, rec: dict[str, Any], body: bytes) -> None:
        req = urllib.request.Request(self.url + "/minicpm/v1/completions", data=body,
                                     method="POST",
                                     headers={"Authorization": f"token {TOKEN}",
                                              "Content-Type": "application/json"})
        text = ""
        with urllib.request.urlopen(req, timeout=600) as r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                piece = chunk["choices"][0]["text"] if chunk.get("choices") else ""
                if piece and rec["first"] is None:
                    rec["first"] = time.perf_counter()
                text += piece
        rec["end"] = time.perf_counter()
        rec["frame"] = {"type": "done", "text": text.strip() and text, "dropped": None,
                        "usage": None, "timing": {}}

    def stop(self, rid: str) -> None:
        rec = self.recs[rid]
        if rec["end"] is None:
            rec["stopped"] = True  # stale for the client; the server goes on

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r["end"] is not None for r in self.recs.values()):
                return
            time.sleep(0.02)


class Chat:
    """A sidebar chat socket with its own reader thread (which also answers the server's
    pings: an unread socket is closed after 30 s)."""

    def __init__(self, url: str):
        self.ws = connect(url, "/minicpm/chat")
        self.waiting: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                f = json.loads(self.ws.recv())
            except Exception:  # closed
                return
            now = time.perf_counter()
            with self.lock:
                w = self.waiting.get(str(f.get("id")))
            if w is None:
                continue
            if f["type"] == "delta" and w["first"] is None:
                w["first"] = now
            if f["type"] in ("done", "error"):
                w["frame"] = f
                w["event"].set()

    def ask(self, i: int, max_tokens: int) -> float:
        """Seconds to the first delta of a fresh sidebar-like question."""
        topic = TOPICS[i % len(TOPICS)]
        msgs = [{"role": "user", "content": f"Question {i}: explain {topic} in one sentence."}]
        rid = f"chat{i}"
        w = {"first": None, "frame": None, "event": threading.Event()}
        with self.lock:
            self.waiting[rid] = w
        t0 = time.perf_counter()
        self.ws.send(json.dumps({"type": "chat", "id": rid, "messages": msgs,
                                 "sampling": {"max_tokens": max_tokens, "temperature": 0,
                                              "ignore_eos": True}}))
        if not w["event"].wait(900) or w["frame"]["type"] == "error":
            raise RuntimeError(f"chat {rid} failed: {w['frame']}")
        return (w["first"] or time.perf_counter()) - t0


# --- replay ------------------------------------------------------------------------------------


def type_cell(inline: Inline, before: list[dict[str, str]], code: str, args: Any,
              label: str, chat: Any | None, chat_times: list[float], chat_seq: list[int]) -> int:
    """Type one cell; returns the number of keystrokes."""
    keys = keystrokes(code)
    cur: str | None = None
    next_chat = time.perf_counter() + args.chat_every_s
    t = time.perf_counter()
    fresh = not args.no_fresh_line and isinstance(inline, Inline)
    for k, (text, eol) in enumerate(keys):
        # the keystroke
        now = time.perf_counter()
        if t > now:
            time.sleep(t - now)
        enter = after_enter(text)
        if cur is not None:
            rec = inline.recs[cur]
            typed = text[len(rec["prefix"]):] if text.startswith(rec["prefix"]) else None
            if fresh and enter and typed and rec["text"].startswith(typed):
                rec["enter_key"], rec["typed"] = True, typed  # kept through the newline
            else:
                inline.stop(cur)  # typing on: the old suggestion is stale
                cur = None
        last = text[-1:]
        gap = args.keystroke_ms
        if enter and fresh:
            gap = args.enter_pause_ms  # a look at the new line
        if enter:
            inline.enter_keys = getattr(inline, "enter_keys", 0) + 1
        if eol:
            gap = args.line_pause_ms
        elif last in "(.=":
            gap = args.think_ms
        if k == len(keys) - 1:
            gap = args.line_pause_ms
        t += gap / 1000
        if cur is None and gap > args.debounce_ms and (
                jupyterlab_would_fire(text) or (fresh and enter)):
            fire = time.perf_counter() + args.debounce_ms / 1000
            time.sleep(max(0.0, fire - time.perf_counter()))
            mode = "block" if fresh and enter and after_opener(text) else None
            cur = inline.send(text, before, args, label, mode)
            inline.recs[cur]["enter_key"] = enter
        if chat is not None and time.perf_counter() >= next_chat:
            # A sidebar question while typing goes on: answered in a thread.
            chat_seq[0] += 1
            n = chat_seq[0]
            threading.Thread(target=lambda n=n: chat_times.append(
                chat.ask(n, args.chat_tokens)), daemon=True).start()
            next_chat = time.perf_counter() + args.chat_every_s
    return len(keys)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def run_model(model: str, label: str, args: Any, peer: bool) -> list[dict[str, Any]]:
    """Type the cells with our socket (and, with ``peer``, each cell again with the naive
    client, alternating who goes first); one row per client."""
    proc, url = start_server(model, args.n_ctx, args.threads)
    kinds = ["ours", "naive"] if peer else ["ours"]
    try:
        clients: dict[str, Any] = {"ours": Inline(url)}
        if peer:
            clients["naive"] = Naive(url)
        chat = Chat(url)
        busy_chat = Chat(url)
        idle = {k: [] for k in kinds}
        typing = {k: [] for k in kinds}
        keys = dict.fromkeys(kinds, 0)
        seconds = dict.fromkeys(kinds, 0.0)
        seq = [0]
        warm = read_cells(HERE / "notebooks" / NOTEBOOKS[0])
        clients["ours"].send("import ", warm[:2], args, "warm-up")  # page the model in
        chat.ask(999, 2)
        clients["ours"].wait_all(600)
        clients["ours"].recs.clear()
        turn = 0
        cold_ms: list[float] = []
        for nb in NOTEBOOKS:
            cells = read_cells(HERE / "notebooks" / nb)
            code_idx = [i for i, c in enumerate(cells) if c["kind"] == "code"][-args.cells:]
            # Opening the notebook: one request prefills its context (timed: the cold cost).
            ours = clients["ours"]
            rid = ours.send("import ", cells[:code_idx[0]], args, "cold")
            ours.wait_all(900)
            cold_ms.append((ours.recs[rid]["end"] - ours.recs[rid]["sent"]) * 1000)
            del ours.recs[rid]
            for ci in code_idx:
                order = kinds if turn % 2 == 0 else kinds[::-1]
                turn += 1
                for kind in order:
                    t0 = time.perf_counter()
                    seq[0] += 1
                    idle[kind].append(chat.ask(seq[0], args.chat_tokens))  # nobody typing
                    keys[kind] += type_cell(clients[kind], cells[:ci], cells[ci]["source"],
                                            args, f"{nb}#{ci}", busy_chat, typing[kind], seq)
                    clients[kind].wait_all(300)
                    time.sleep(0.5)
                    seconds[kind] += time.perf_counter() - t0
        rows = []
        for kind in kinds:
            recs = list(clients[kind].recs.values())
            name = label if kind == "ours" else f"{label}, naive peer"
            out = summarize(name, recs, idle[kind], typing[kind], keys[kind], seconds[kind],
                            getattr(clients[kind], "enter_keys", 0))
            out["client"] = kind
            out["cold_notebook_ms"] = cold_ms
            out["raw"] = [{"label": r["label"], "stopped": r["stopped"],
                           "first_ms": None if r["first"] is None
                           else (r["first"] - r["sent"]) * 1000,
                           "end_ms": None if r["end"] is None else (r["end"] - r["sent"]) * 1000,
                           "frame": r["frame"]} for r in recs]
            rows.append(out)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


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


def engine_only(model: str, label: str, args: Any) -> dict[str, Any]:
    """In-process, no server, no timing gaps: for each notebook, the cold prefill of its
    context once, then one request per keystroke of its last code cell (first ``--keys``
    keystrokes) timed to the first generated token (max_tokens=1), and every 8th keystroke a
    whole one-line suggestion. Isolates the engine + prompt cache from typing and the network."""
    import minicpm
    from minicpm import completion

    engine = minicpm.load(model, n_ctx=args.n_ctx, n_threads=args.threads)
    counter = completion.TokenCounter(engine.count_tokens)
    cold, warm, line, reused, prompt_tokens = [], [], [], 0, 0

    def once(req: Any, max_tokens: int) -> tuple[float, float, int, int]:
        before = engine.stats().get("prompt_cache", {}).get("tokens_reused", 0)
        t0 = time.perf_counter()
        prompt, sugg, gen = completion.complete(engine, req, max_tokens=max_tokens,
                                                counter=counter)
        t1 = time.perf_counter()  # the prompt is built and counted
        for delta in gen:
            if sugg.feed(delta):
                break
        gen.close()
        end = time.perf_counter()
        ttft = gen.usage.time_to_first_token  # prefill + the first token, shown or not
        first_s = (t1 - t0) + ttft if ttft is not None else end - t0
        after = engine.stats().get("prompt_cache", {}).get("tokens_reused", 0)
        return first_s, end - t0, after - before, gen.usage.prompt_tokens

    try:
        for nb in NOTEBOOKS:
            cells = read_cells(HERE / "notebooks" / nb)
            ci = [i for i, c in enumerate(cells) if c["kind"] == "code"][-1]
            before = [completion.Cell(c["kind"], c["source"]) for c in cells[:ci]]
            keys = [k for k, _ in keystrokes(cells[ci]["source"])
                    if jupyterlab_would_fire(k)][: args.keys]
            f, t, r, n = once(completion.CompletionRequest("import ", before=before), 1)
            cold.append(t * 1000)
            for j, text in enumerate(keys):
                req = completion.CompletionRequest(text, before=before, mode="line")
                f, t, r, n = once(req, 1)
                warm.append(f * 1000)
                reused, prompt_tokens = reused + r, prompt_tokens + n
                if j % 8 == 7:
                    f, t, r, n = once(req, args.max_tokens)
                    line.append(t * 1000)
                    reused, prompt_tokens = reused + r, prompt_tokens + n
    finally:
        engine.close()
    return {"model": label, "mode": "engine only", "cold_prefill_ms": cold,
            "first_token_ms": {"p50": pct(warm, 50), "p95": pct(warm, 95), "n": len(warm)},
            "one_line_ms": {"p50": pct(line, 50), "p95": pct(line, 95), "n": len(line)},
            "reused_share": reused / prompt_tokens if prompt_tokens else None,
            "warm_over_cold": (pct(warm, 50) or 0) / statistics.median(cold) if cold else None}


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
