"""JSON schemas, ``response_format`` and tool lists → GBNF grammars for constrained sampling.

Backend-free: the grammar text is what llama.cpp's grammar sampler takes. The schema → GBNF
converter is llama.cpp's own (the Python port shipped in llama-cpp-python), with three
changes made here: strings cannot hold raw control characters (Python's ``json.loads``
refuses them), numeric bounds (``minimum``…) become exact digit grammars (grammar_ranges.py,
as llama.cpp's C++ converter does for integers), keywords the converter would silently ignore
(``multipleOf``, ``not``…) are refused up front, so whatever the grammar allows also
validates, and repetition counts are capped (the converter spells repetitions out:
``minItems: 100000`` would be a huge grammar).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import SchemaError
from .grammar_ranges import bounded_rule, check_bounds, has_bounds

__all__ = ["SchemaError"]  # defined with the other engine errors (the worker protocol maps them)


# Validation keywords the converter does not enforce: output would parse but might not validate.
UNENFORCED = frozenset({
    "multipleOf", "not", "if",
    "then", "else", "uniqueItems", "contains", "minContains", "maxContains", "minProperties",
    "maxProperties", "patternProperties", "propertyNames", "dependentRequired",
    "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "dependencies",
})
# Keys whose values are data, not schemas (never walked).
DATA_KEYS = frozenset({"enum", "const", "default", "examples", "title", "description",
                       "required", "$comment", "format", "pattern", "type"})
COUNT_KEYS = ("minItems", "maxItems", "minLength", "maxLength")
MAX_COUNT = 256
MAX_DEPTH = 32
MAX_GRAMMAR_CHARS = 256_000
KNOWN_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})

# JSON text in strings: no raw control characters (RFC 8259), as JSON parsers demand.
_CHAR_RULE_OLD = 'char ::= [^"\\\\] |'
_CHAR_RULE_NEW = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


def check_schema(schema: Any, where: str = "schema", depth: int = 0) -> None:
    """Refuse what the converter cannot turn into an exact grammar, naming the place."""
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise SchemaError(f"{where} must be a JSON schema object")
    if has_bounds(schema):
        check_bounds(schema, where)
    for key, value in schema.items():
        at = f"{where}.{key}"
        if key in UNENFORCED:
            raise SchemaError(f"{at}: the '{key}' keyword is not supported by the grammar "
                              "converter (the output could not be guaranteed to validate)")
        if key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            raise SchemaError(f"{at}: only local references (#/...) are supported")
        if key in COUNT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                raise SchemaError(f"{at} must be a whole number from 0 to {MAX_COUNT}")
        if key == "type":
            types = value if isinstance(value, list) else [value]
            bad = [t for t in types if t not in KNOWN_TYPES]
            if bad:
                raise SchemaError(f"{at}: unknown type {bad[0]!r}")
        if key in DATA_KEYS:
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            for name, sub in value.items():  # names are data; their values are schemas
                check_schema(sub, f"{at}.{name}", depth + 1)
        elif isinstance(value, Mapping):
            check_schema(value, at, depth + 1)
        elif isinstance(value, list) and key in ("anyOf", "oneOf", "allOf", "prefixItems",
                                                 "items"):
            for i, sub in enumerate(value):
                check_schema(sub, f"{at}[{i}]", depth + 1)


def _prefix_defs(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Rename $defs so that several tools' definitions (pydantic names them alike) do not
    collide in one grammar: the converter names a reference's rule after its last part."""
    schema = copy.deepcopy(schema)
    renames: dict[str, str] = {}
    for key in ("$defs", "definitions"):
        defs = schema.get(key)
        if isinstance(defs, dict):
            schema[key] = {f"{prefix}{n}": v for n, v in defs.items()}
            renames.update({f"#/{key}/{n}": f"#/{key}/{prefix}{n}" for n in defs})

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref in renames:
                node["$ref"] = renames[ref]
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(schema)
    return schema


def _converter() -> Any:
    """llama-cpp-python's converter, taught bounded integers and numbers (imported lazily)."""
    from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

    class Converter(SchemaConverter):  # type: ignore[misc]
        def visit(self, schema: Any, name: str) -> Any:
            if isinstance(schema, dict) and has_bounds(schema) and not any(
                    k in schema for k in ("$ref", "oneOf", "anyOf", "const", "enum")):
                rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
                kind = schema.get("type")
                if isinstance(kind, list):  # the base class would drop the bounds here
                    alts = [{**schema, "type": t} for t in kind]
                    return self._add_rule(rule_name, self._generate_union_rule(name, alts))
                if kind in ("integer", "number"):
                    return self._add_rule(rule_name, bounded_rule(schema))
            return super().visit(schema, name)

    return Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


class _Rules:
    """One converter for a whole grammar: primitive rules are shared, the rest are named."""

    def __init__(self) -> None:
        self.conv = _converter()

    def schema(self, schema: Any, name: str) -> str:
        """Add the rules for ``schema``; returns the name of its rule."""
        check_schema(schema)
        if schema is True or schema == {}:
            schema = {"type": "object"}
        elif schema is False:
            raise SchemaError("schema false accepts nothing")
        schema = _prefix_defs(dict(schema), f"{name}-")
        try:
            schema = self.conv.resolve_refs(schema, name)
            return str(self.conv.visit(schema, name))
        except (AssertionError, KeyError, ValueError, TypeError, RecursionError) as e:
            raise SchemaError(f"the schema cannot be turned into a grammar: {e}") from None

    def add(self, name: str, rule: str) -> str:
        return str(self.conv._add_rule(name, rule))

    def literal(self, text: str) -> str:
        return str(self.conv._format_literal(text))

    def text(self, root: str) -> str:
        self.conv._rules["root"] = root
        out = self.conv.format_grammar().replace(_CHAR_RULE_OLD, _CHAR_RULE_NEW)
        if len(out) > MAX_GRAMMAR_CHARS:
            raise SchemaError(f"the schema makes a grammar of {len(out):,} characters; the "
                              f"limit is {MAX_GRAMMAR_CHARS:,}")
        return out


def json_object_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


def response_format_grammar(response_format: Any) -> str | None:
    """``{"type": "text" | "json_object" | "json_schema", "json_schema": {"schema": ...}}``
    → a GBNF grammar, or None for plain text."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise SchemaError("response_format must be an object with a 'type'")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_object_grammar()
    if kind != "json_schema":
        raise SchemaError("response_format.type must be 'text', 'json_object' or 'json_schema'")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping) or "schema" not in spec:
        raise SchemaError("response_format.json_schema must be an object with a 'schema'")
    rules = _Rules()
    return rules.text(rules.schema(spec["schema"], "answer"))


def check_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI ``tools`` ([{"type": "function", "function": {name, description, parameters}}])
    checked and reduced to their functions."""
    if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
        raise SchemaError("tools must be a list of {'type': 'function', 'function': {...}}")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(t, Mapping) or t.get("type", "function") != "function" \
                or not isinstance(fn, Mapping):
            raise SchemaError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 \
                or not all(c.isalnum() or c in "_-." for c in name):
            raise SchemaError(f"tools[{i}].function.name must be 1-64 letters, digits, _ - or .")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        check_schema(params, f"tools[{i}].function.parameters")
        desc = fn.get("description")
        out.append({"name": name, "description": desc if isinstance(desc, str) else "",
                    "parameters": params})
    names = [f["name"] for f in out]
    if len(set(names)) != len(names):
        raise SchemaError("tools have duplicate names")
    return out


def tool_calls_grammar(functions: Sequence[Mapping[str, Any]], only: str | None = None,
                       content_schema: str | None = None, parallel: bool = False) -> str:
    """One or more ``<tool_call>{"name": "<name>", "arguments": <args>}</tool_call>`` lines
    (exact spacing, so the parser and the streamer need no guessing); ``only``: one tool.
    ``content_schema``: a response_format grammar the reply may take instead of calls.
    ``parallel``: several calls in one reply (off by default, as in llama-server: small
    models otherwise tend to repeat the same call)."""
    rules = _Rules()
    alts = []
    for i, fn in enumerate(functions):
        if only is not None and fn["name"] != only:
            continue
        args = rules.schema(fn["parameters"], f"tool{i}-args")
        head = rules.literal(f'{TOOL_OPEN}{{"name": "{fn["name"]}", "arguments": ')
        alts.append(rules.add(f"tool{i}-call", f'{head} {args} "}}" {rules.literal(TOOL_CLOSE)}'))
    if not alts:
        raise SchemaError(f"tool_choice names {only!r}, which is not in tools")
    call = rules.add("call", " | ".join(alts))
    calls = rules.add("calls", f'{call} ("\\n" {call})*' if parallel else call)
    root = calls
    if content_schema is not None:
        # The answer may be the response_format's JSON instead: merge its rules under a prefix.
        rules.conv._rules.update({f"content-{k}": _rename(v, content_schema)
                                  for k, v in _parse_rules(content_schema).items()})
        root = f"{calls} | content-root"
    return rules.text(root)


def _parse_rules(gbnf: str) -> dict[str, str]:
    """``name ::= body`` lines (the converters write one rule per line, except JSON_GBNF)."""
    out: dict[str, str] = {}
    name = None
    for line in gbnf.splitlines():
        line = _strip_comment(line)
        if "::=" in line and not line.startswith((" ", "\t")):
            name, body = (s.strip() for s in line.split("::=", 1))
            out[name] = body
        elif name and line.strip():
            out[name] += " " + line.strip()
    return out


def _rename(body: str, gbnf: str) -> str:
    """Prefix every rule reference in ``body`` with ``content-`` (outside literals/classes)."""
    names = set(_parse_rules(gbnf))
    out, i, n = [], 0, len(body)
    while i < n:
        c = body[i]
        if c in "\"[":
            end = _skip(body, i, '"' if c == '"' else "]")
            out.append(body[i:end])
            i = end
        elif c.isalnum() or c == "-":
            j = i
            while j < n and (body[j].isalnum() or body[j] == "-"):
                j += 1
            word = body[i:j]
            out.append(f"content-{word}" if word in names else word)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _strip_comment(line: str) -> str:
    i = 0
    while i < len(line):
        if line[i] in "\"[":
            i = _skip(line, i, '"' if line[i] == '"' else "]")
        elif line[i] == "#":
            return line[:i].rstrip()
        else:
            i += 1
    return line


def _skip(body: str, start: int, close: str) -> int:
    i = start + 1
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == close:
            return i + 1
        i += 1
    return len(body)


def dumps_schema(schema: Any) -> str:
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
