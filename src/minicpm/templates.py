"""Chat templates: MiniCPM's own, byte-exact, and the Jinja template a model file carries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MINICPM = "minicpm"
"""Name of MiniCPM's built-in template (no Jinja needed)."""

USER_TAG = "<用户>"
AI_TAG = "<AI>"

# Used when a file carries no template at all and is not MiniCPM: ChatML is what most small
# instruct models (SmolLM2 included) were trained on.
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

ROLES = ("system", "user", "assistant")
# What a conversation may hold on input (tool turns are rendered as text before templating).
INPUT_ROLES = (*ROLES, "tool", "developer")

Message = Mapping[str, Any]


def message_text(content: Any) -> str:
    """Content as text: a string, or OpenAI-style parts whose text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(texts)
    raise ValueError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def normalize_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Check roles and flatten content to text; raises ValueError on a malformed conversation.

    Besides system / user / assistant: ``developer`` is taken as ``system`` (OpenAI's newer
    name), assistant turns may carry OpenAI ``tool_calls``, and ``tool`` turns carry results
    (``tools.to_template_messages`` turns both into text every template can render)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role', 'content'} objects")
    if not messages:
        raise ValueError("messages is empty")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
        role = "system" if m["role"] == "developer" else m["role"]
        if role not in INPUT_ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(INPUT_ROLES)}, "
                             f"got {m['role']!r}")
        msg: dict[str, Any] = {"role": role, "content": message_text(m.get("content"))}
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _check_calls(m["tool_calls"], i)
        if role == "tool":
            tid = m.get("tool_call_id")
            if tid is not None and not isinstance(tid, str):
                raise ValueError(f"messages[{i}].tool_call_id must be a string")
            msg["tool_call_id"] = tid
        out.append(msg)
    return out


def _check_calls(calls: Any, i: int) -> list[dict[str, Any]]:
    """An assistant turn's OpenAI tool_calls, reduced to what the prompt needs."""
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)):
        raise ValueError(f"messages[{i}].tool_calls must be a list")
    out = []
    for j, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise ValueError(f"messages[{i}].tool_calls[{j}] must be "
                             "{'type': 'function', 'function': {'name', 'arguments'}}")
        args = fn.get("arguments", "{}")
        if not isinstance(args, (str, Mapping)):
            raise ValueError(f"messages[{i}].tool_calls[{j}].function.arguments must be a "
                             "JSON string")
        out.append({"id": c.get("id"), "type": "function",
                    "function": {"name": fn["name"], "arguments": args}})
    return out


def render_minicpm(messages: Sequence[Message]) -> str:
    """MiniCPM-2B/1B's template as trained (and as llama.cpp's built-in `minicpm` template):
    user turns are ``<用户>{content.strip()}<AI>``; system and assistant text is a bare, stripped
    prefix. The BOS token is added by the tokenizer, not here."""
    parts = []
    for m in normalize_messages(messages):
        if m["role"] == "user":
            parts.append(f"{USER_TAG}{m['content'].strip()}{AI_TAG}")
        else:
            parts.append(m["content"].strip())
    return "".join(parts)


def render_jinja(
    template: str,
    messages: Sequence[Message],
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Render a Hugging Face-style chat template (as stored in GGUF or tokenizer_config.json)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"chat template refused the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=normalize_messages(messages),
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
    )


def choose_template(architecture: str, file_template: str | None) -> str:
    """MiniCPM-1/2's template for MiniCPM models (whatever their file says, since several community
    GGUFs carry none or a generic one), except a file whose own template speaks ChatML: MiniCPM 4
    keeps arch "minicpm" but was trained on <|im_start|> turns. Otherwise the file's own; ChatML
    as a last resort."""
    if file_template and USER_TAG in file_template:
        return MINICPM
    if architecture == "minicpm" and not (file_template and "<|im_start|>" in file_template):
        return MINICPM
    return file_template or CHATML_JINJA


def render(template: str, messages: Sequence[Message], bos_token: str = "", eos_token: str = "",
           tokenizer_adds_bos: bool = True) -> str:
    """The prompt text for a conversation, ready to tokenize.

    When the tokenizer adds BOS itself, a Jinja template's leading BOS text is stripped so that
    there is exactly one (SmolLM2's BOS is `<|im_start|>` and its tokenizer adds none: kept)."""
    if template == MINICPM:
        return render_minicpm(messages)
    text = render_jinja(template, messages, bos_token=bos_token, eos_token=eos_token)
    if tokenizer_adds_bos and bos_token and text.startswith(bos_token):
        text = text[len(bos_token):]
    return text


def stop_strings(template: str) -> tuple[str, ...]:
    """Text that ends a reply beyond the EOS token: the next turn's marker."""
    if template == MINICPM:
        return (USER_TAG,)
    if "<|im_start|>" in template:
        return ("<|im_end|>", "<|im_start|>")
    return ()
