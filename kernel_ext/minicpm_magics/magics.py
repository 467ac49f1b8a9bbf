"""``%minicpm`` and ``%%minicpm``: ask, explain, fix, image, models, use, status, reset, history,
help, chat. Bad input and engine errors become one short line in the cell, never our
traceback."""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import display
from traitlets import Bool, Dict, Float, Int, Unicode

from minicpm import prompts
from minicpm.errors import MiniCPMError

from .cell_names import names_used
from .context import ErrorLog, ImageLog, cell_parts, interpolate, last_cell_number, notebook_parts
from .fix_apply import PendingFix
from .image_input import resolve_image
from .inspect_vars import (
    approx_tokens,
    is_user_variable,
    lookup,
    names_in_text,
    variable_context,
)
from .memory import Conversation
from .options import MagicUsageError, Request, parse
from .render import StreamingDisplay, answer_footer, extract_code, parse_json
from .safe_markdown import SafeMarkdown as Markdown  # status/models/history carry model text
from .transport import Prompt, Reply, Transport, TransportError, choose

FORMAT_INSTRUCTIONS = {
    "code": "Answer with only one fenced Python code block and no explanation.",
    "json": "Answer with only valid JSON: no prose, no code fences.",
}

HELP = """\
**%minicpm** — ask a local MiniCPM model from the notebook.

| usage | what it does |
| --- | --- |
| `%minicpm QUESTION` | ask (`{var}`, `{In[3]}`, `{Out[3]}`, `{Err[3]}` are filled in) |
| `%%minicpm [options]` + cell | ask the cell's text |
| `%minicpm explain [n]` | explain cell n (default: the last one) |
| `%minicpm fix` | explain the last error and give corrected code |
| `%minicpm fix --apply` | the same, plus the fix as a diff; `%minicpm apply` (pre-filled below) puts it in place |
| `%minicpm image [expr]` | explain a figure / image (default: the last one drawn) |
| `%minicpm models` / `use MODEL` | list models / switch model |
| `%minicpm status` | transport (server or in-process) and model |
| `%minicpm history` / `reset` | show / forget the conversation memory |
| `%minicpm chat` | a chat widget |
| `%minicpm ask TEXT` | ask TEXT even if it starts with a sub-command's name |

Options (before the question): `--model M`, `--temperature T`, `--top-p P`, `--max-tokens N`,
`--seed S`, `--system TEXT`, `--format markdown|code|text|json` (`code`: the code goes into a
new cell; `json`: the parsed object is returned), `--no-stream`,
`--context none|cell|notebook|vars` (or a list: `cell,vars`), `--vars df,model` (describe these
variables: type, shape, columns, head), `--no-interpolate`.
Interrupt the kernel to stop an answer; the partial text stays.
"""


def say(message: str) -> None:
    """A short message in the cell (stderr, like a warning): used for every user error."""
    print(f"%minicpm: {message}", file=sys.stderr)


@magics_class
class MiniCPMMagics(Magics):
    """Configurable as ``c.MiniCPMMagics.*`` (or ``%config MiniCPMMagics.memory_turns = 4``)."""

    memory_turns = Int(8, help="Exchanges kept as conversation memory (0: none).").tag(config=True)
    memory_chars = Int(12000, help="Characters of memory kept at most.").tag(config=True)
    max_tokens = Int(512, help="Default --max-tokens.").tag(config=True)
    update_interval = Float(0.1, help="Seconds between streamed display updates.").tag(
        config=True)
    transport_mode = Unicode(
        "auto", help="auto (the kernel's Jupyter server if it runs minicpm_server, else "
                     "in-process), server or in-process.").tag(config=True)
    load_options = Dict(help="Options for minicpm.load in-process (n_ctx, n_threads, ...).").tag(
        config=True)
    auto_variables = Bool(True, help="explain and fix describe the variables the cell uses.").tag(
        config=True)
    auto_variables_tokens = Int(256, help="Budget for automatic variables (explain, fix, "
                                          "--context vars).").tag(config=True)
    mention_tokens = Int(512, help="Budget for each variable named with --vars.").tag(config=True)
    context_window = Int(0, help="The model's window for context budgets (0: ask the server "
                                 "or the loaded engine, else n_ctx, else 4096).").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self.errors = ErrorLog(shell)
        self.images = ImageLog(shell)
        self.memory = Conversation(self.memory_turns, self.memory_chars)
        self._transport: Transport | None = None
        self.last_usage: dict[str, Any] = {}
        self.last_prompt: Prompt | None = None  # what was sent last: for tests and debugging
        self.last_text = ""  # the last answer's text
        self.fixes = PendingFix()

    @property
    def transport(self) -> Transport:
        """Chosen on first use, so loading the extension costs nothing."""
        if self._transport is None:
            self._transport = choose(self.transport_mode, dict(self.load_options))
        return self._transport

    # --- entry point -------------------------------------------------------------------------
    @no_var_expand  # we interpolate ourselves: --no-interpolate must be able to turn it off
    @line_cell_magic
    def minicpm(self, line: str, cell: str | None = None) -> Any:
        """Ask a local MiniCPM model; `%minicpm help` lists everything."""
        # %config may have changed the bounds since the last call
        self.memory.max_turns = self.memory_turns
        self.memory.max_chars = self.memory_chars
        try:
            return self.dispatch(parse(line, cell))
        except MagicUsageError as e:
            say(str(e))
        except (TransportError, MiniCPMError, ValueError) as e:
            say(str(e))
        except KeyboardInterrupt:
            say("interrupted")
        except Exception as e:  # a bug of ours: one line, not a traceback in the user's cell
            say(f"internal error ({type(e).__name__}: {e}); please report it")
        return None

    def dispatch(self, req: Request) -> Any:
        handler = getattr(self, f"cmd_{req.command}")
        return handler(req)

    # --- sub-commands ------------------------------------------------------------------------
    def cmd_help(self, req: Request) -> None:
        display(Markdown(HELP))

    def cmd_status(self, req: Request) -> None:
        s = self.transport.status()
        where = ("the Jupyter server's shared engine at " + s["where"]
                 if s["transport"] == "server" else "in-process (this kernel)")
        lines = [f"**transport:** {s['transport']} — {where}",
                 f"**model:** {s.get('model') or 'none'} ({s.get('state')})"]
        for key in ("backend", "quantization", "context_length"):
            if s.get(key):
                lines.append(f"**{key.replace('_', ' ')}:** {s[key]}")
        lines.append(f"**memory:** {len(self.memory)} of {self.memory.max_turns} exchanges")
        if self.last_usage.get("tokens_per_second"):
            lines.append(f"**last answer:** {self.last_usage.get('completion_tokens')} tokens "
                         f"at {self.last_usage['tokens_per_second']:.1f} tok/s")
        if s.get("hint"):
            lines.append(f"**note:** {s['hint']}")
        display(Markdown("  \n".join(lines)))

    def cmd_models(self, req: Request) -> None:
        rows, current = self.transport.models()
        out = ["| model | format | size | here | notes |", "| --- | --- | --- | --- | --- |"]
        for r in rows:
            name = r["name"] + (" (stand-in)" if r.get("stand_in") else "")
            if current and r["name"] == current:
                name = f"**{name}** ← current"
            size = f"{r.get('size_bytes', 0) / 1e9:.1f} GB" if r.get("size_bytes") else ""
            out.append(f"| {name} | {r.get('format', '')} | {size} | "
                       f"{'yes' if r.get('available') else 'no'} | {r.get('notes', '')} |")
        display(Markdown("\n".join(out)))

    def cmd_use(self, req: Request) -> None:
        label = self.transport.use(req.arg)
        display(Markdown(f"Now using **{label}** ({self.transport.kind})."))

    def cmd_reset(self, req: Request) -> None:
        n = self.memory.reset()
        display(Markdown(f"Conversation memory cleared ({n} exchange{'s' * (n != 1)} forgotten)."))

    def cmd_history(self, req: Request) -> None:
        msgs = self.memory.messages()
        if not msgs:
            display(Markdown("*No conversation yet.*"))
            return
        display(Markdown("\n\n".join(f"**{m['role']}:** {m['content']}" for m in msgs)))

    def cmd_chat(self, req: Request) -> Any:
        from .widget import ChatWidget

        w = ChatWidget(magics=self)
        display(w)
        return None

    def cmd_explain(self, req: Request) -> Any:
        arg = req.arg.removeprefix("In[").removesuffix("]")
        n = int(arg) if arg else last_cell_number(self.shell)
        if n is None:
            raise MagicUsageError("no cell to explain yet: run one first, or give its number")
        if n < 0:
            n = len(self.shell.user_ns.get("In", [])) - 1 + n
        try:
            parts = cell_parts(self.shell, n, self.errors)
        except LookupError as e:
            raise MagicUsageError(str(e)) from None
        return self.ask(req, req.instruction or prompts.EXPLAIN_CELL, parts,
                        remember_as=f"Explain cell [{n}]:\n{parts[0]['text']}",
                        code=parts[0]["text"])

    def cmd_fix(self, req: Request) -> Any:
        rec = self.errors.last()
        if rec is None:
            raise MagicUsageError("no error to fix yet: no cell has raised an exception in "
                                  "this kernel")
        label = f"cell [{rec.execution_count}]"
        parts = [{"kind": "cell", "label": label, "text": rec.code, "language": "python"},
                 {"kind": "error", "label": label, "text": rec.traceback}]
        result = self.ask(req, req.instruction or prompts.FIX_ERROR, parts,
                          remember_as=f"Fix {label} ({rec.ename}: {rec.evalue}):\n{rec.code}",
                          code=rec.code)
        if req.arg == "--apply":
            self.fixes.offer(self.shell, self.last_text, rec.code, label)
        return result

    def cmd_apply(self, req: Request) -> None:
        self.fixes.apply(self.shell)

    def cmd_image(self, req: Request) -> Any:
        part, label = resolve_image(req.arg, self.shell.user_ns, self.images)
        return self.ask(req, req.instruction or prompts.EXPLAIN_IMAGE, [part],
                        remember_as=f"Explain the image {label}")

    def cmd_ask(self, req: Request) -> Any:
        question = req.arg
        if not req.no_interpolate:
            question = interpolate(question, self.shell.user_ns)
        return self.ask(req, question, [])

    # --- asking ------------------------------------------------------------------------------
    def build_prompt(self, req: Request, question: str, parts: list[dict[str, Any]],
                     code: str | None = None) -> Prompt:
        """``code``: the cell being explained or fixed (its variables are described)."""
        if "cell" in req.contexts:
            n = last_cell_number(self.shell)
            if n is not None:
                parts = cell_parts(self.shell, n, self.errors) + parts
        elif "notebook" in req.contexts:
            parts = notebook_parts(self.shell, self.errors) + parts
        parts = parts + self.variable_parts(req, question, parts, code)
        messages: list[dict[str, str]] = []
        system = req.system
        if req.format in FORMAT_INSTRUCTIONS:
            system = f"{system or prompts.SYSTEM_PROMPT} {FORMAT_INSTRUCTIONS[req.format]}"
        if system:
            messages.append({"role": "system", "content": system})
        messages += self.memory.messages()
        messages.append({"role": "user", "content": question})
        sampling = req.sampling()
        sampling.setdefault("max_tokens", self.max_tokens)
        return Prompt(messages, parts, sampling, req.model)

    def ask(self, req: Request, question: str, parts: list[dict[str, Any]],
            remember_as: str | None = None, code: str | None = None) -> Any:
        prompt = self.last_prompt = self.build_prompt(req, question, parts, code)
        out = StreamingDisplay(req.format, self.update_interval, stream=not req.no_stream)
        out.start("*…*")
        reply = self.transport.start(prompt)
        stopped = self._stream(reply, out)
        text = self.last_text = out.text
        out.finish(answer_footer(reply, stopped))
        self.last_usage = dict(reply.usage or {})
        self.memory.add(remember_as or question, text)
        if req.format == "code":
            code = extract_code(text)
            if code.strip():
                self.shell.set_next_input(code, replace=False)
        elif req.format == "json" and not stopped:
            try:
                return parse_json(text)
            except ValueError as e:
                say(str(e))
        return None

    # --- variables -----------------------------------------------------------------------------
    def variable_parts(self, req: Request, question: str, parts: list[dict[str, Any]],
                       code: str | None) -> list[dict[str, Any]]:
        """One context part describing variables: those named with --vars (each ≤
        mention_tokens), then automatic ones (--context vars: the question's and the previous
        cell's; explain/fix: the cell's), together ≤ auto_variables_tokens; everything ≤ half
        the window minus the other context."""
        ns = self.shell.user_ns
        auto: list[str] = []
        if "vars" in req.contexts:
            auto += names_in_text(question, ns)
            n = last_cell_number(self.shell)
            if n is not None:
                auto += self._cell_vars(ns["In"][n])
        if code is not None and self.auto_variables:
            auto += self._cell_vars(code)
        mentioned = req.var_names
        if not auto and not mentioned:
            return []
        other = sum(approx_tokens(str(p.get("text", ""))) for p in parts)
        budget = max(0, self._window() // 2 - other)
        named, left = variable_context(mentioned, ns, each_tokens=self.mention_tokens,
                                       total_tokens=budget)
        missing = [n for n in left if not lookup(n, ns)[0]]
        if missing:
            say(f"--vars: no variable named {', '.join(missing)} in this kernel")
        used = sum(v.tokens for v in named)
        auto_budget = min(self.auto_variables_tokens, budget - used)
        more, _ = variable_context([n for n in auto if n not in mentioned], ns,
                                   each_tokens=auto_budget, total_tokens=auto_budget)
        texts = [v.text for v in named + more]
        if not texts:
            return []
        return [{"kind": "text", "label": "variables in the kernel", "text": "\n".join(texts)}]

    def _cell_vars(self, code: str) -> list[str]:
        ns = self.shell.user_ns
        transform = self.shell.input_transformer_manager.transform_cell
        return [n for n in names_used(code, transform) if n in ns and is_user_variable(n, ns[n])]

    def _window(self) -> int:
        if self.context_window > 0:
            return self.context_window
        try:
            n = self.transport.status().get("context_length")
        except Exception:  # a budget is still needed when the server is unreachable
            n = None
        return int(n or self.load_options.get("n_ctx") or 4096)

    def _stream(self, reply: Reply, out: StreamingDisplay) -> bool:
        """Feed deltas to the display; an interrupt cancels and keeps what came. True if
        stopped by the user."""
        stopped = False
        try:
            try:
                for delta in reply:
                    out.add(delta)
            except KeyboardInterrupt:
                stopped = True
                reply.cancel()
                try:  # collect the last token or two while the engine stops (within one)
                    for delta in reply:
                        out.add(delta)
                except KeyboardInterrupt:  # a second interrupt: stop waiting
                    pass
        finally:
            reply.close()
        return stopped
