"""The completion benchmark's server and clients: a real server started with the stand-in or a
given model, our completion socket (``Inline``), a naive /v1/completions streamer (``Naive``) and
a sidebar chat socket (``Chat``), each stamping frames from its own reader thread."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import websocket
from minicpm_server.testserver import start_server as launch

TOKEN = "bench-completion"
TOPICS = ["pandas indexing", "matplotlib axes", "numpy broadcasting", "train/test splits",
          "rolling windows", "groupby aggregation", "logistic regression", "time zones"]


def start_server(model: str, n_ctx: int, threads: int) -> tuple[Any, str]:
    try:
        server = launch(f"--MiniCPM.model={model}", f"--MiniCPM.n_ctx={n_ctx}",
                        f"--MiniCPM.n_threads={threads}",
                        "--MiniCPM.chats_dir=/tmp/minicpm-bench-chats", token=TOKEN, timeout=300)
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    return server.proc, server.url


def connect(url: str, path: str) -> Any:
    return websocket.create_connection(url.replace("http", "ws", 1) + path,
                                       header=[f"Authorization: token {TOKEN}"])


class Socket:
    """A socket with a reader thread that stamps each frame as it arrives (reading also answers
    the server's pings: an unread socket is closed after 30 s)."""

    def __init__(self, url: str, path: str):
        self.ws = connect(url, path)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                f = json.loads(self.ws.recv())
            except Exception:  # closed
                return
            self.on_frame(f, time.perf_counter())

    def on_frame(self, f: dict[str, Any], now: float) -> None:
        raise NotImplementedError


class Inline(Socket):
    """The completion socket."""

    def __init__(self, url: str):
        self.recs: dict[str, dict[str, Any]] = {}
        self.seq = 0
        super().__init__(url, "/minicpm/complete")

    def on_frame(self, f: dict[str, Any], now: float) -> None:
        with self.lock:
            rec = self.recs.get(str(f.get("id")))
            if rec is None:
                return
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


class Chat(Socket):
    """A sidebar chat socket."""

    def __init__(self, url: str):
        self.waiting: dict[str, dict[str, Any]] = {}
        super().__init__(url, "/minicpm/chat")

    def on_frame(self, f: dict[str, Any], now: float) -> None:
        with self.lock:
            w = self.waiting.get(str(f.get("id")))
        if w is None:
            return
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
