"""Tool calling in text: the prompt that offers tools, history turns with calls and results,
and the parser (whole text or streamed) that turns the model's calls into OpenAI
``tool_calls``.

MiniCPM has no native tool format, and the ChatML/llama-3 stand-ins each have their own, so
one compact, Hermes-style format serves every template:
``<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>``, one line
per call. The tools are offered in the system text as one minified JSON line each (no
``title`` keys: every token is prefill on a CPU). Results go back as a user turn of
``<tool_response>`` blocks, which any template can render. With a grammar (``grammar.py``)
the calls come out in exactly this spelling, so the streaming parser needs no guessing."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .grammar import TOOL_CLOSE, TOOL_OPEN, SchemaError, check_tools

TOOL_CHOICES = ("none", "auto", "required")
_HEAD = re.compile(r'\s*\{"name": "([A-Za-z0-9_.\-]{1,64})", "arguments": ')
_HEAD_PREFIX = '{"name": "'
_END = "}" + TOOL_CLOSE


def check_tool_choice(tool_choice: Any, has_tools: bool) -> tuple[str, str | None]:
    """OpenAI ``tool_choice`` → (mode, the one tool's name or None)."""
    if tool_choice is None:
        return ("auto" if has_tools else "none"), None
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise SchemaError("tool_choice must be 'none', 'auto', 'required' or "
                              "{'type': 'function', 'function': {'name': ...}}")
        if tool_choice != "none" and not has_tools:
            raise SchemaError(f"tool_choice {tool_choice!r} needs tools")
        return tool_choice, None
    fn = tool_choice.get("function") if isinstance(tool_choice, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str):
        raise SchemaError("tool_choice must name a function: "
                          "{'type': 'function', 'function': {'name': ...}}")
    if not has_tools:
        raise SchemaError("tool_choice names a function but no tools were given")
    return "named", name


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def tools_prompt(functions: Sequence[Mapping[str, Any]], mode: str, only: str | None,
                 parallel: bool = False) -> str:
    """The system text that offers the tools (short: it is prefilled on every request)."""
    lines = [json.dumps({"name": f["name"], "description": f["description"],
                         "parameters": _strip_titles(f["parameters"])},
                        separators=(",", ":"), ensure_ascii=False) for f in functions]
    if mode == "named":
        how = f"Call the tool {only} now"
    elif mode == "required":
        how = "Call a tool now"
    else:
        how = "If a tool helps, call it"
    each = ", one line per call" if parallel else ""
    return ("Tools:\n" + "\n".join(lines) + f"\n{how}: answer{each} "
            f'{TOOL_OPEN}{{"name": <name>, "arguments": <JSON object>}}{TOOL_CLOSE}')


def call_text(name: str, arguments: Any) -> str:
    """A call in the model's own spelling (history turns, and remote servers' calls)."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return f'{TOOL_OPEN}{{"name": "{name}", "arguments": {arguments.strip() or "{}"}}}{TOOL_CLOSE}'


def to_template_messages(messages: Sequence[Mapping[str, Any]],
                         tools_text: str | None = None) -> list[dict[str, str]]:
    """Normalised messages (see ``templates.normalize_messages``) → plain system / user /
    assistant turns: assistant calls become call lines, consecutive tool results one user
    turn of ``<tool_response>`` blocks, and ``tools_text`` joins the system text."""
    out: list[dict[str, str]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(call_text(c["function"]["name"], c["function"]["arguments"])
                              for c in m["tool_calls"])
            content = f"{content.strip()}\n{calls}" if content.strip() else calls
        if role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        out.append({"role": role, "content": content})
    for m in out:
        m.pop("_tool", None)
    if tools_text:
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content'].rstrip()}\n\n{tools_text}".lstrip()
        else:
            out.insert(0, {"role": "system", "content": tools_text})
    return out


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _split_call(body: str) -> tuple[str, str] | None:
    """``{"name": "X", "arguments": ARGS}`` (the exact spelling) → (X, ARGS as written)."""
    m = _HEAD.match(body)
    if m:
        args = body[m.end():].rstrip()
        if args.endswith("}"):
            return m.group(1), args[:-1]
    try:  # a looser spelling (a model without a grammar): re-serialise
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return obj["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The reply → (content or None, OpenAI tool_calls). A call cut short (max_tokens) keeps
    its arguments as written, as OpenAI's do; text that is not a call stays content."""
    calls: list[dict[str, Any]] = []
    content: list[str] = []
    pos = 0
    while True:
        start = text.find(TOOL_OPEN, pos)
        if start < 0:
            content.append(text[pos:])
            break
        end = text.find(TOOL_CLOSE, start)
        body = text[start + len(TOOL_OPEN): end if end >= 0 else len(text)]
        parsed = _split_call(body)
        if parsed is None and end < 0:
            m = _HEAD.match(body)  # cut short: keep the arguments written so far
            parsed = (m.group(1), body[m.end():]) if m else None
        if parsed is None:
            content.append(text[pos:start + len(TOOL_OPEN)])
            pos = start + len(TOOL_OPEN)
            continue
        content.append(text[pos:start])
        calls.append({"id": new_call_id(), "type": "function",
                      "function": {"name": parsed[0], "arguments": parsed[1]}})
        if end < 0:
            break
        pos = end + len(TOOL_CLOSE)
    joined = "".join(content).strip()
    return (joined or None), calls


class ToolCallStream:
    """Text deltas → OpenAI-style stream events: ``("content", text)``, ``("call", index,
    id, name)`` when a call's name is known, ``("args", index, fragment)`` as its arguments
    arrive. Fragments of one call join to exactly the arguments ``parse_tool_calls`` gives."""

    def __init__(self) -> None:
        self.state = "text"
        self.buf = ""
        self.calls: list[dict[str, Any]] = []
        self._held_space = ""

    def feed(self, text: str) -> list[tuple[Any, ...]]:
        self.buf += text
        out: list[tuple[Any, ...]] = []
        while True:
            before = (self.state, len(self.buf))
            getattr(self, f"_{self.state}")(out)
            if (self.state, len(self.buf)) == before:
                return out

    def finish(self) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        if self.state == "args" and self.buf:
            self._emit_args(out, self.buf)
        elif self.buf:
            self._content(out, ("" if self.state == "text" else TOOL_OPEN) + self.buf)
        self.buf = ""
        return out

    def _content(self, out: list[tuple[Any, ...]], text: str) -> None:
        text = self._held_space + text
        if not text.strip():  # white space around calls is not content
            self._held_space = text
            return
        self._held_space = ""
        out.append(("content", text))

    def _text(self, out: list[tuple[Any, ...]]) -> None:
        i = self.buf.find(TOOL_OPEN)
        if i >= 0:
            if i:
                self._content(out, self.buf[:i])
            self.buf, self.state = self.buf[i + len(TOOL_OPEN):], "head"
            return
        hold = max((k for k in range(1, len(TOOL_OPEN)) if self.buf.endswith(TOOL_OPEN[:k])),
                   default=0)
        if len(self.buf) > hold:
            self._content(out, self.buf[:len(self.buf) - hold])
            self.buf = self.buf[len(self.buf) - hold:]

    def _head(self, out: list[tuple[Any, ...]]) -> None:
        m = _HEAD.match(self.buf)
        if m:
            self.calls.append({"id": new_call_id(), "name": m.group(1), "args": ""})
            out.append(("call", len(self.calls) - 1, self.calls[-1]["id"], m.group(1)))
            self.buf, self.state = self.buf[m.end():], "args"
            return
        stripped = self.buf.lstrip()
        probe = min(len(stripped), len(_HEAD_PREFIX))
        if stripped[:probe] != _HEAD_PREFIX[:probe] or len(stripped) > 96:
            # Not our spelling: it stays text (the final parse may still read it).
            self._content(out, TOOL_OPEN + self.buf)
            self.buf, self.state = "", "text"

    def _args(self, out: list[tuple[Any, ...]]) -> None:
        i = self.buf.find(_END)
        if i >= 0:
            self._emit_args(out, self.buf[:i])
            self.buf, self.state = self.buf[i + len(_END):], "text"
            return
        hold = max((k for k in range(1, len(_END)) if self.buf.endswith(_END[:k])), default=0)
        if len(self.buf) > hold:
            self._emit_args(out, self.buf[:len(self.buf) - hold])
            self.buf = self.buf[len(self.buf) - hold:]

    def _emit_args(self, out: list[tuple[Any, ...]], fragment: str) -> None:
        if fragment:
            self.calls[-1]["args"] += fragment
            out.append(("args", len(self.calls) - 1, fragment))


STRUCTURED_OPTIONS = ("response_format", "tools", "tool_choice", "parallel_tool_calls")


def plan_chat(messages: Sequence[Mapping[str, Any]], options: dict[str, Any],
              forwards: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Normalised messages + the caller's options → (messages for the template, sampling
    options with ``grammar`` / ``grammar_triggers`` instead of response_format / tools /
    tool_choice, the tool mode). ``forwards``: the backend hands those three to a server of
    its own (remote): they are checked and passed on as ``passthrough``, messages unchanged.

    Tool modes: "none" (tools not offered), "required" / "named" (the whole reply is calls,
    by grammar), "auto" (free text until the model writes ``<tool_call>``: a lazy grammar
    from there; with a response_format as well, the reply is that JSON or calls)."""
    from .grammar import response_format_grammar, tool_calls_grammar

    opts = dict(options)
    rf, raw_tools, choice, parallel = (opts.pop(k, None) for k in STRUCTURED_OPTIONS)
    if parallel is not None and not isinstance(parallel, bool):
        raise SchemaError("parallel_tool_calls must be true or false")
    functions = check_tools(raw_tools) if raw_tools else []
    mode, only = check_tool_choice(choice, bool(functions))
    content = response_format_grammar(rf)
    if forwards:
        passed = {k: v for k, v in zip(STRUCTURED_OPTIONS, (rf, raw_tools, choice, parallel),
                                       strict=True)
                  if v is not None}
        if passed:
            opts["passthrough"] = passed
        return [dict(m) for m in messages], opts, mode
    hint = None
    if rf is not None and content is not None and rf.get("type") == "json_schema":
        schema = _strip_titles(rf["json_schema"]["schema"])
        hint = "Answer with JSON that matches this schema: " + json.dumps(
            schema, separators=(",", ":"), ensure_ascii=False)
    elif content is not None:
        hint = "Answer with a JSON object."
    if mode == "none":
        grammar, triggers = content, ()
        offered = hint
    else:
        offered = tools_prompt(functions, mode, only, bool(parallel)) + (
            f"\n{hint}" if hint else "")
        many = bool(parallel) and mode != "named"
        if mode in ("required", "named"):
            grammar, triggers = tool_calls_grammar(functions, only, parallel=many), ()
        elif content is not None:
            grammar, triggers = tool_calls_grammar(functions, content_schema=content,
                                                   parallel=many), ()
        else:
            grammar = tool_calls_grammar(functions, parallel=many)
            triggers = (re.escape(TOOL_OPEN),)
    if grammar is not None:
        opts["grammar"], opts["grammar_triggers"] = grammar, triggers
    return to_template_messages(messages, offered), opts, mode


class RemoteCallText:
    """A remote server's streamed ``tool_calls`` deltas → our call lines, as text deltas
    (so that one parser serves every backend)."""

    def __init__(self) -> None:
        self.open_index: int | None = None
        self.wrote_args = False

    def feed(self, delta: Mapping[str, Any]) -> str:
        out = []
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(self.close() + content)
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, Mapping):
                continue
            fn = call.get("function") if isinstance(call.get("function"), Mapping) else {}
            index = call.get("index", 0)
            name = fn.get("name")
            if index != self.open_index and isinstance(name, str) and name:
                out.append(self.close() + f'{TOOL_OPEN}{{"name": "{name}", "arguments": ')
                self.open_index, self.wrote_args = index, False
            args = fn.get("arguments")
            if isinstance(args, str) and args and self.open_index is not None:
                out.append(args)
                self.wrote_args = True
        return "".join(out)

    def close(self) -> str:
        if self.open_index is None:
            return ""
        self.open_index = None
        return ("" if self.wrote_args else "{}") + "}" + TOOL_CLOSE + "\n"
