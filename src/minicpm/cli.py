"""The `minicpm` command. Logs and labels go to stderr; stdout carries only generated text."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .errors import MiniCPMError

log = logging.getLogger("minicpm")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="catalogue name, GGUF file or HF folder (default: best local MiniCPM, "
                        "else the embedded stand-in)")
    p.add_argument("--backend", default="auto", choices=["auto", "llama.cpp", "torch", "remote"])
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="torch backend only")
    p.add_argument("--quant", default=None, choices=["int8", "int4"], help="torch backend only")
    p.add_argument("--n-ctx", type=int, default=None, help="context size in tokens")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: auto, the cores other processes leave free)")
    p.add_argument("--base-url", default=None, help="remote backend: OpenAI-compatible server URL")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")


def _load(args: argparse.Namespace):
    from .api import load

    options: dict[str, Any] = {}
    for name, opt in (("device", "device"), ("quant", "quant"), ("n_ctx", "n_ctx"),
                      ("threads", "n_threads"), ("base_url", "base_url")):
        if getattr(args, name, None) is not None:
            options[opt] = getattr(args, name)
    engine = load(args.model, backend=args.backend, **options)
    info = engine.info
    print(f"model: {info.label} [{info.backend}/{info.device}, {info.quantization}]",
          file=sys.stderr)
    if info.stand_in and info.hint:
        print(f"hint: {info.hint}", file=sys.stderr)
    return engine


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _stream(gen) -> None:
    try:
        for delta in gen:
            sys.stdout.write(delta)
            sys.stdout.flush()
    except KeyboardInterrupt:
        gen.close()
        print("\n[stopped]", file=sys.stderr)
    sys.stdout.write("\n")
    sys.stdout.flush()
    u = gen.usage
    log.info("%d prompt + %d generated tokens, %.1f tok/s, finish: %s", u.prompt_tokens,
             u.completion_tokens, u.tokens_per_second, u.finish_reason)


def cmd_generate(args: argparse.Namespace) -> int:
    engine = _load(args)
    if args.raw:
        gen = engine.complete(args.prompt, **_sampling(args))
    else:
        msgs = ([{"role": "system", "content": args.system}] if args.system else [])
        msgs.append({"role": "user", "content": args.prompt})
        gen = engine.chat(msgs, **_sampling(args))
    _stream(gen)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    engine = _load(args)
    history: list[dict[str, str]] = []
    if args.system:
        history.append({"role": "system", "content": args.system})
    if args.prompt:
        history.append({"role": "user", "content": args.prompt})
        _stream(engine.chat(history, **_sampling(args)))
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a message; /reset clears the conversation, /exit or Ctrl-D quits.",
              file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            history = history[:1] if args.system else []
            print("[conversation cleared]", file=sys.stderr)
            continue
        history.append({"role": "user", "content": line})
        gen = engine.chat(history, truncate="left", **_sampling(args))
        _stream(gen)
        history.append({"role": "assistant", "content": gen.text})


def cmd_models(args: argparse.Namespace) -> int:
    from .catalogue import list_models

    rows = list_models(args.model_dir)
    if args.json:
        print(json.dumps(rows, indent=1, default=list))
        return 0
    for r in rows:
        # * = here and chats; - = here but not a chat model (embeddings, a projector alone)
        mark = (" " if not r["available"] else "*" if r.get("chat", True) else "-")
        size = f"{r['size_bytes'] / 1e9:5.2f} GB" if r["size_bytes"] else "   ?    "
        label = r["name"] + (" (stand-in)" if r["stand_in"] else "")
        source = r.get("source") or ""
        kind = r["format"] if r.get("chat", True) else r.get("kind", "")
        where = r["local_path"] or r["hub_id"] or ""
        print(f"{mark} {label:44s} {source:15s} {kind:10s} {size} {where}")
    print("* = on this machine; - = on this machine, not a chat model; other tools' models "
          "load in place by the name shown", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .download import download

    resolved = download(args.name, args.dir)
    print(resolved.path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    from .bench import add_arguments as bench_arguments  # stdlib only: cheap

    parser = argparse.ArgumentParser(prog="minicpm", description="MiniCPM on your own machine")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="answer one prompt and exit")
    _model_args(g)
    _sampling_args(g)
    g.add_argument("--prompt", "-p", required=True)
    g.add_argument("--system", default=None, help="system prompt (chat mode)")
    g.add_argument("--raw", action="store_true", help="no chat template: continue the text")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("chat", help="chat (a REPL when no prompt is given)")
    _model_args(c)
    _sampling_args(c)
    c.add_argument("prompt", nargs="?", default=None)
    c.add_argument("--system", default=None)
    c.set_defaults(func=cmd_chat)

    m = sub.add_parser("models", help="list the catalogue and local models")
    m.add_argument("--json", action="store_true")
    m.add_argument("--model-dir", action="append", default=None)
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("download", help="download a catalogue model (needs network)")
    d.add_argument("name")
    d.add_argument("--dir", default=None)
    d.set_defaults(func=cmd_download)

    b = sub.add_parser("bench", help="decode/prefill speed vs raw llama-cpp-python")
    bench_arguments(b)
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (MiniCPMError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
