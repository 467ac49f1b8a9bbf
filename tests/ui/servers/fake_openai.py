"""A hostile OpenAI-compatible server on loopback, for the browser tests (issue: untrusted model
output). Every chat or completion request is answered with HTML and Markdown that would run a
script, fetch from this server's /leak path, or put a live javascript: link on the page if the
frontend rendered model output as HTML. Each payload would set `window.__minicpmPwned`.

    python fake_openai.py --port 8898

GET /log lists every request path it saw (the test checks no /leak) and the JSON bodies POSTed
(variables.spec.js reads the prompt); GET /health answers ok.

Scripted tool-call mode (agent.spec.js): POST /script {"replies": [...]} queues the answers to
the next chat requests that carry `tools`; each reply is {"content": "..."} or {"tool_calls":
[{"name": ..., "arguments": {...}}]}, optionally with "slow": seconds (streams dots that long
first, so Stop can be tried). Tool calls stream as OpenAI streams them (name first, arguments
in pieces). With the queue empty, a tools request gets {"content": "Done."}.
Standard library only: it runs before anything else in the test set-up."""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "hostile-model"


def payload(port: int) -> str:
    leak = f"http://127.0.0.1:{port}/leak"
    return f"""HOSTILE-ANSWER begins.

<img src="{leak}?img" onerror="window.__minicpmPwned='img-onerror'">

<script>window.__minicpmPwned='script'</script>

<svg><image href="{leak}?svg" onload="window.__minicpmPwned='svg-image'"></image></svg>

![x]({leak}?md)

[click me](javascript:window.__minicpmPwned='md-js-link')

<a href="javascript:window.__minicpmPwned='html-js-link'">html js link</a>

<span data-commandlinker-command="help:about" data-commandlinker-args="{{}}">linker span</span>

<div style="background-image:url({leak}?css)">styled div</div>

| col a | col b |
|-------|-------|
| 1     | 2     |

```python
print("safe code")
```

<pre><code>print("smuggled")<span style="display:none">; window.__minicpmPwned = 'hidden-span'</span></code></pre>

HOSTILE-ANSWER ends.
"""


class Handler(BaseHTTPRequestHandler):
    script: list[dict] = []  # scripted replies for requests with tools
    log: list[str] = []
    bodies: list[object] = []  # the JSON bodies POSTed (variables.spec.js reads the prompt)
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _record(self) -> None:
        with self.lock:
            Handler.log.append(self.path)

    def _json(self, obj: object, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/log":  # not recorded: the test's own look
            with self.lock:
                self._json({"requests": list(Handler.log), "bodies": list(Handler.bodies)})
            return
        self._record()
        if self.path == "/health":
            self._json({"ok": True})
        elif self.path.rstrip("/").endswith("/v1/models"):
            self._json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:  # /leak… included: a 404, so an <img> there would fire onerror
            self._json({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        self._record()
        n = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            req = {}
        if self.path == "/script":
            with self.lock:
                Handler.script = list(req.get("replies") or [])
            self._json({"ok": True})
            return
        with self.lock:
            Handler.bodies.append(req)
        chat = self.path.endswith("/chat/completions")
        if chat and req.get("tools"):
            with self.lock:
                reply = Handler.script.pop(0) if Handler.script else {"content": "Done."}
            self._scripted(reply, bool(req.get("stream")))
            return
        if not (chat or self.path.endswith("/completions")):
            self._json({"error": "not found"}, 404)
            return
        text = payload(self.server.server_address[1])
        if not req.get("stream"):
            choice = ({"message": {"role": "assistant", "content": text}} if chat
                      else {"text": text})
            self._json({"id": "x", "model": MODEL, "choices": [{"index": 0, **choice,
                                                              "finish_reason": "stop"}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        step = 40  # several chunks, as a real server streams
        for i in range(0, len(text), step):
            piece = text[i:i + step]
            choice = {"delta": {"content": piece}} if chat else {"text": piece}
            chunk = {"id": "x", "model": MODEL, "choices": [{"index": 0, **choice,
                                                             "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.005)
        end = {"id": "x", "model": MODEL, "choices": [{"index": 0, "delta": {},
                                                       "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


    def _chunk(self, delta: dict, finish: str | None = None) -> None:
        chunk = {"id": "x", "model": MODEL, "choices": [{"index": 0, "delta": delta,
                                                         "finish_reason": finish}]}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def _scripted(self, reply: dict, stream: bool) -> None:
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                 for i, c in enumerate(reply.get("tool_calls") or [])]
        content = reply.get("content")
        finish = "tool_calls" if calls else "stop"
        if not stream:
            msg = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
            self._json({"id": "x", "model": MODEL, "choices": [{"index": 0, "message": msg,
                                                              "finish_reason": finish}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            until = time.monotonic() + float(reply.get("slow") or 0)
            while time.monotonic() < until:  # a slow model: Stop must end the turn
                self._chunk({"content": "."})
                time.sleep(0.2)
            if content:
                self._chunk({"role": "assistant", "content": content})
            for i, c in enumerate(calls):
                args = c["function"]["arguments"]
                self._chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                             "function": {"name": c["function"]["name"],
                                                          "arguments": ""}}]})
                for k in range(0, len(args), 16):
                    self._chunk({"tool_calls": [{"index": i, "function":
                                                 {"arguments": args[k:k + 16]}}]})
            self._chunk({}, finish)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (Stop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8898)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
