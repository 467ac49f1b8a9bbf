"""A model served by someone else's OpenAI-compatible server (vLLM, llama.cpp's server, Ollama).

Message-level: it overrides ``stream_chat`` / ``stream_complete`` and streams Server-Sent
Events over plain ``http.client`` (no extra dependency). Cancel closes the connection, which
those servers take as "stop generating". The only network connection the plugin ever makes
is this one, to the URL the user configured.

The remote server is not trusted further than its answers: what is read from it is capped
(``max_response_bytes``), and credentials (an API key, or ``user:pass@`` in the URL) never
appear in ``info``, error messages or logs: they show as ``***``.
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import BackendUnavailableError, ContextOverflowError, MiniCPMError, ModelNotFoundError
from ..sampling import SamplingParams
from ..tools import RemoteCallText
from .base import Backend, EngineInfo, Usage

log = logging.getLogger("minicpm")

DEFAULT_CONTEXT = 4096  # when the server does not say
MAX_RESPONSE_BYTES = 16 * 2**20  # what one answer or listing may send us
MAX_LINE_BYTES = 1 * 2**20  # one SSE line
MAX_STOP = 16  # stop strings forwarded (OpenAI itself takes 4)


def redact_url(url: str) -> str:
    """The URL with any ``user:password@`` replaced by ``***@`` (for display and logs)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteError(MiniCPMError):
    """The remote server answered with an error."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"remote server: {status} {message}")


class RemoteBackend(Backend):
    # response_format / tools / tool_choice go to the server as they are (its own grammar).
    forwards_structured = True
    name = "remote"

    can_tokenize = False  # the server's tokenizer is not ours: no local context budget

    def __init__(self, model: str | None = None, base_url: str | None = None,
                 api_key_env: str | None = None, timeout: float = 120.0,
                 vision: bool = False, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 **ignored: Any):
        if not base_url:
            raise BackendUnavailableError("the remote backend needs base_url, e.g. "
                                          "http://127.0.0.1:8080/v1")
        if ignored:
            log.debug("remote backend ignores options: %s", ", ".join(sorted(ignored)))
        shown = redact_url(base_url.rstrip("/"))
        try:
            parts = urlsplit(base_url.rstrip("/"))
            port = parts.port
        except ValueError:
            raise ValueError(f"base_url is not a valid URL: {shown!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {shown!r}")
        self.base_url = shown  # what is shown anywhere; credentials stay in _auth
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, port
        self._prefix = parts.path
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._auth: str | None = None
        if parts.username is not None:  # http://user:pass@host/v1 → HTTP Basic
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._auth = "Basic " + base64.b64encode(cred.encode()).decode("ascii")
        self._api_key = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env)
            if not self._api_key:
                raise BackendUnavailableError(f"environment variable {api_key_env} is not set "
                                              "(it should hold the remote server's API key)")
        if (self._api_key or self._auth) and self._scheme == "http" \
                and not _is_loopback(self._host):
            log.warning("the remote server %s is reached over plain http: its API key or "
                        "password crosses the network unencrypted; use https", self.base_url)
        models = self._get_json("/models").get("data") or []
        models = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        ids = [m.get("id") for m in models]
        if model is None:
            if not ids:
                raise ModelNotFoundError(f"{self.base_url} serves no models")
            model = ids[0]
        elif ids and model not in ids:
            raise ModelNotFoundError(f"{self.base_url} does not serve {model!r}; it serves: "
                                     + ", ".join(map(str, ids)))
        meta = next((m.get("meta") or {} for m in models if m.get("id") == model), {})
        meta = meta if isinstance(meta, dict) else {}
        try:
            ctx = int(meta.get("n_ctx") or meta.get("n_ctx_train") or meta.get("max_model_len")
                      or DEFAULT_CONTEXT)
        except (TypeError, ValueError, OverflowError):
            ctx = DEFAULT_CONTEXT
        self.model = model
        self.info = EngineInfo(
            model=str(model), architecture=str(meta.get("architecture", "remote")),
            quantization="remote", context_length=ctx, backend="remote", device="remote",
            vision=vision, path=self.base_url,
            extra={"base_url": self.base_url, "context_length_known": bool(meta)})

    # --- HTTP ---------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        elif self._auth:
            h["Authorization"] = self._auth
        return h

    def _request(self, method: str, path: str, body: Any = None
                 ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._conn()
        try:
            conn.request(method, self._prefix + path,
                         body=json.dumps(body) if body is not None else None,
                         headers=self._headers())
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            raise BackendUnavailableError(f"cannot reach {self.base_url}: {e}") from e
        if resp.status >= 400:
            raw = resp.read(64 * 1024).decode("utf-8", "replace")
            conn.close()
            raise _error_from(resp.status, raw)
        return conn, resp

    def _get_json(self, path: str) -> dict[str, Any]:
        conn, resp = self._request("GET", path)
        try:
            raw = resp.read(self.max_response_bytes + 1)
            if len(raw) > self.max_response_bytes:
                raise BackendUnavailableError(
                    f"{self.base_url}{path} sent more than {self.max_response_bytes:,} bytes")
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return data
        except (ValueError, RecursionError) as e:
            raise BackendUnavailableError(f"{self.base_url}{path} did not return a JSON "
                                          "object") from e
        finally:
            conn.close()

    def _stream(self, path: str, body: dict[str, Any], cancel: threading.Event, usage: Usage,
                pick: Any) -> Iterator[str]:
        start = time.perf_counter()
        first_at: float | None = None
        usage.finish_reason = "stop"
        conn, resp = self._request("POST", path, body)
        received = 0
        try:
            while True:  # one SSE line at a time, each and all of them capped
                raw = resp.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    break
                received += len(raw)
                if len(raw) > MAX_LINE_BYTES or received > self.max_response_bytes:
                    raise RemoteError(502, f"the answer from {self.base_url} is larger than "
                                           f"{self.max_response_bytes:,} bytes; stopped reading")
                if cancel.is_set():
                    usage.finish_reason = "cancelled"
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    err = chunk["error"]
                    raise RemoteError(500, err.get("message", str(err)) if isinstance(err, dict)
                                      else str(err))
                if isinstance(chunk.get("usage"), dict):
                    n = chunk["usage"].get("prompt_tokens")
                    usage.prompt_tokens = n if isinstance(n, int) else usage.prompt_tokens
                choices = chunk.get("choices")
                for choice in choices if isinstance(choices, list) else ():
                    if not isinstance(choice, dict):
                        continue
                    text = pick(choice) or ""
                    if not isinstance(text, str):
                        continue
                    if text:
                        now = time.perf_counter()
                        if first_at is None:
                            first_at = now
                            usage.time_to_first_token = usage.prefill_seconds = now - start
                        usage.completion_tokens += 1  # one chunk ≈ one token on these servers
                        usage.decode_seconds = now - first_at
                        yield text
                    if choice.get("finish_reason") == "length":
                        usage.finish_reason = "length"
            if cancel.is_set():
                usage.finish_reason = "cancelled"
        finally:
            conn.close()  # closing the socket is how the remote server learns to stop

    def _sampling(self, params: SamplingParams) -> dict[str, Any]:
        # Capped here too: a local caller's max_tokens=10**9 or 10,000 stop strings would
        # otherwise go to the remote server as they are.
        body: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": min(int(params.max_tokens),
                                                  self.info.context_length)}
        if params.top_k:
            body["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            body["repeat_penalty"] = params.repetition_penalty  # llama.cpp's name
        if params.seed is not None:
            body["seed"] = params.seed
        for k in ("frequency_penalty", "presence_penalty"):
            if getattr(params, k):
                body[k] = getattr(params, k)
        if params.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in params.logit_bias}
        if params.stop:
            if len(params.stop) > MAX_STOP:
                raise ValueError(f"{len(params.stop)} stop strings; the remote backend sends "
                                 f"at most {MAX_STOP}")
            body["stop"] = list(params.stop)
        return body

    # --- Backend ------------------------------------------------------------------------------
    def stream_chat(self, messages: list[dict[str, str]], images: Sequence[Any],
                    params: SamplingParams, cancel: threading.Event, usage: Usage
                    ) -> Iterator[str] | None:
        msgs: list[dict[str, Any]] = [dict(m) for m in messages]
        if images:
            last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
            msgs[last]["content"] = [{"type": "text", "text": msgs[last]["content"]}] + [
                {"type": "image_url", "image_url": {"url": _data_uri(im)}} for im in images]
        for m in msgs:  # OpenAI wants call arguments as JSON text
            for c in m.get("tool_calls") or ():
                if not isinstance(c["function"]["arguments"], str):
                    c["function"]["arguments"] = json.dumps(c["function"]["arguments"])
        body = {"model": self.model, "messages": msgs, "stream": True,
                "stream_options": {"include_usage": True}, **self._sampling(params),
                **(params.passthrough or {})}
        calls = RemoteCallText()  # their tool_calls → our call lines (tools.parse_tool_calls)

        def pick(choice: dict[str, Any]) -> str:
            delta = choice.get("delta")
            text = calls.feed(delta) if isinstance(delta, dict) else ""
            return text + (calls.close() if choice.get("finish_reason") else "")

        return self._stream("/chat/completions", body, cancel, usage, pick)

    def stream_complete(self, prompt: str, params: SamplingParams, cancel: threading.Event,
                        usage: Usage) -> Iterator[str] | None:
        body = {"model": self.model, "prompt": prompt, "stream": True, **self._sampling(params)}
        return self._stream("/completions", body, cancel, usage, lambda c: c.get("text"))


def _error_from(status: int, raw: str) -> MiniCPMError:
    try:
        err = json.loads(raw).get("error", raw)
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        message = raw[:500]
    if "context" in message.lower() and ("exceed" in message.lower() or "too long" in message.lower()
                                         or "maximum" in message.lower()):
        e = ContextOverflowError(0, 0)
        e.args = (f"remote server: {message}",)
        return e
    if status == 404:
        return ModelNotFoundError(f"remote server: {message}")
    if status in (400, 422):
        return ValueError(f"remote server refused the request: {message}")  # type: ignore[return-value]
    return RemoteError(status, message)


def _data_uri(image: Any) -> str:
    """PIL image, raw bytes, a data URI or a file path → data URI."""
    if isinstance(image, str) and image.startswith("data:"):
        return image
    if isinstance(image, (bytes, bytearray)):
        raw, mime = bytes(image), "image/png"
    elif isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            raw = f.read()
        mime = "image/jpeg" if str(image).lower().endswith((".jpg", ".jpeg")) else "image/png"
    else:  # PIL.Image
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        raw, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"
