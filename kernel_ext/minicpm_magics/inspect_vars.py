"""Compact descriptions of the user's variables, so the model sees the data's shape instead of
guessing column names.

``describe(name, value)`` gives a few lines: type, length/shape, dtypes, a DataFrame's columns,
row count and ``head(3)``, a Series' dtype and head, an array's shape/dtype/min/max, a container's
length and preview, a function's signature. Every repr is truncated; modules and IPython's own
names are skipped. pandas, numpy and torch objects are recognised by their type's module, so this
file imports none of them (a kernel that never imported pandas does not start importing it).

``variable_context`` fits the descriptions of some names (``cell_names.names_used`` finds those
a cell reads) into a token budget. Tokens are estimated (``approx_tokens``): the kernel does
not always hold the model's tokenizer (server transport)."""

from __future__ import annotations

import inspect
import re
import reprlib
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REPR_CHARS = 100  # any single repr
LINE_CHARS = 160  # any single line of a description
HEAD_ROWS = 3
MAX_COLUMNS = 40  # columns listed before "… N more"
MINMAX_MAX_SIZE = 2_000_000  # arrays larger than this: no min/max (it reads every element)
LIST_MAX = 500  # variables listed for the sidebar at most

# IPython's own names and ours: never context
HIDDEN = {"In", "Out", "Err", "exit", "quit", "get_ipython", "open"}


def approx_tokens(text: str) -> int:
    """ceil(len / 3.5): the project's one tokenizer-free ratio (the sidebar's estimateTokens,
    minicpm.completion): MiniCPM/Llama BPE averages 3.5–4 characters a token on code and
    English, so 3.5 errs high. Not imported from minicpm: that would bring numpy into kernels."""
    return (len(text) * 2 + 6) // 7


_repr = reprlib.Repr()
_repr.maxstring = REPR_CHARS
_repr.maxother = REPR_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 6
_repr.maxdict = 5
_repr.maxlevel = 2


def clip(text: str, limit: int = REPR_CHARS) -> str:
    text = text.replace("\n", "\\n") if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_repr(value: Any, limit: int = REPR_CHARS) -> str:
    """A one-line repr, truncated; reprlib keeps huge containers from being walked."""
    try:
        return clip(_repr.repr(value), limit)
    except Exception as e:  # a broken __repr__ must not break the description
        return f"<repr failed: {type(e).__name__}>"


def _type_name(value: Any) -> str:
    t = type(value)
    mod = t.__module__.split(".")[0]
    return t.__name__ if mod in ("builtins", "__main__") else f"{mod} {t.__name__}"


def _is(value: Any, module: str, *names: str) -> bool:
    """isinstance by name, without importing ``module`` (it is in sys.modules if ``value`` came
    from it)."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    return any(isinstance(value, getattr(mod, n, ())) for n in names if hasattr(mod, n))


def _shape(shape: Iterable[int]) -> str:
    return str(tuple(int(s) for s in shape))


# --- one variable --------------------------------------------------------------------------------
def _dataframe(name: str, df: Any, detail: bool) -> list[str]:
    rows, cols = df.shape
    lines = [f"{name}: pandas DataFrame, {rows} rows × {cols} columns"]
    dtypes = df.dtypes.tolist()[:MAX_COLUMNS]
    items = [f"{clip(str(c), 40)} ({t})" for c, t in zip(df.columns[:MAX_COLUMNS], dtypes, strict=True)]
    if cols > MAX_COLUMNS:
        items.append(f"… {cols - MAX_COLUMNS} more")
    # column names are what a model most often invents: all of them (up to MAX_COLUMNS), wrapped
    line = "  columns:"
    for i, item in enumerate(items):
        piece = f" {item}" + ("," if i < len(items) - 1 else "")
        if len(line) + len(piece) > LINE_CHARS:
            lines.append(line)
            line = "   "
        line += piece
    lines.append(line)
    if detail and rows:
        lines.append(f"  head({min(rows, HEAD_ROWS)}):")
        head = df.head(HEAD_ROWS)
        lines += ["    " + clip(line, LINE_CHARS)
                  for line in _table(head if cols <= 12 else head.iloc[:, :12])]
    return lines


def _table(sub: Any) -> list[str]:
    """A few rows as an aligned text table (pandas' to_string costs ~5 ms a frame: too slow
    for 200 variables in 100 ms)."""
    table = [[""] + [clip(str(c), 24) for c in sub.columns]]
    values = sub.to_numpy(dtype=object).tolist()  # one conversion, not one per row
    table += [[_cell(i)] + [_cell(v) for v in row] for i, row in zip(sub.index, values, strict=True)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def _cell(value: Any) -> str:
    if isinstance(value, float):  # 1.5 stays 1.5; 0.0813237411 becomes 0.0813237
        r = repr(value)
        return r if len(r) <= 10 else f"{value:.6g}"
    return clip(str(value), 24)


def _series(name: str, s: Any, detail: bool) -> list[str]:
    label = f" {clip(repr(s.name), 40)}" if s.name is not None else ""
    line = f"{name}: pandas Series{label}, {len(s)} values, dtype {s.dtype}"
    if detail and len(s):
        line += "; head: " + short_repr(s.iloc[:HEAD_ROWS].tolist())
    return [line]


def _array(name: str, a: Any, detail: bool) -> list[str]:
    line = f"{name}: {_type_name(a)}, shape {_shape(a.shape)}, dtype {a.dtype}"
    kind = getattr(a.dtype, "kind", "")
    if detail and kind in "iufb" and 0 < a.size <= MINMAX_MAX_SIZE:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lo, hi = a.min(), a.max()
            line += f", min {_cell(lo.item())}, max {_cell(hi.item())}"
        except Exception:  # NaN-only, object arrays in disguise...: the shape is still useful
            pass
    return [line]


def _tensor(name: str, t: Any) -> list[str]:
    device = getattr(t, "device", None)
    extra = f", device {device}" if device is not None else ""
    return [f"{name}: {_type_name(t)}, shape {_shape(t.shape)}, dtype {t.dtype}{extra}"]


class _Bare(str):
    """A string annotation (``from __future__ import annotations``) shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _signature(f: Any) -> str:
    sig = inspect.signature(f)
    params = [p.replace(annotation=_Bare(p.annotation)) if isinstance(p.annotation, str) else p
              for p in sig.parameters.values()]
    ret = sig.return_annotation
    return str(sig.replace(parameters=params,
                           return_annotation=_Bare(ret) if isinstance(ret, str) else ret))


def _function(name: str, f: Any) -> list[str]:
    try:
        sig = _signature(f)
    except (TypeError, ValueError):
        sig = "(…)"
    doc = (inspect.getdoc(f) or "").strip().splitlines()
    line = f"{name}: function {getattr(f, '__name__', name)}{clip(sig, 120)}"
    return [line + (f" — {clip(doc[0], 80)}" if doc else "")]


def _class(name: str, cls: type) -> list[str]:
    bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
    methods = [m for m in vars(cls) if not m.startswith("_") and callable(vars(cls)[m])][:8]
    line = f"{name}: class {cls.__name__}" + (f"({bases})" if bases else "")
    return [line + (f"; methods: {', '.join(methods)}" if methods else "")]


def describe(name: str, value: Any, detail: bool = True) -> str | None:
    """A few lines about ``value``; None for what is never context (modules, IPython's own).
    ``detail=False``: the first line only (type and size), for listings."""
    try:
        lines = _describe(name, value, detail)
    except Exception as e:  # user objects can raise anywhere: say what it is, not why
        lines = [f"{name}: {_type_name(value)} (not inspectable: {type(e).__name__})"]
    if lines is None:
        return None
    if not detail:
        lines = lines[:1]
    return "\n".join(clip(line, LINE_CHARS) if not line.startswith("    ") else line
                     for line in lines)


def _describe(name: str, value: Any, detail: bool) -> list[str] | None:
    if isinstance(value, types.ModuleType):
        return None
    if _is(value, "pandas", "DataFrame"):
        return _dataframe(name, value, detail)
    if _is(value, "pandas", "Series"):
        return _series(name, value, detail)
    if _is(value, "numpy", "ndarray"):
        return _array(name, value, detail)
    if _is(value, "torch", "Tensor"):
        return _tensor(name, value)
    if isinstance(value, (bool, int, float, complex)) or value is None:
        return [f"{name}: {type(value).__name__} = {short_repr(value)}"]
    if isinstance(value, (str, bytes, bytearray)):
        return [f"{name}: {type(value).__name__}, {len(value)} "
                f"{'chars' if isinstance(value, str) else 'bytes'} = {short_repr(value)}"]
    if isinstance(value, Mapping):
        # insertion order (reprlib would sort the keys)
        items = [f"{short_repr(k, 30)}: {short_repr(v, 30)}" for k, v in _first(value.items(), 5)]
        more = ", …" if len(value) > 5 else ""
        preview = clip("{" + ", ".join(items) + more + "}", REPR_CHARS)
        return [f"{name}: {_type_name(value)}, {len(value)} keys = {preview}"]
    if isinstance(value, (list, tuple, set, frozenset)) or _is(value, "collections", "deque"):
        kinds = sorted({type(v).__name__ for v in _first(value, 5)})
        of = f" of {'/'.join(kinds)}" if kinds else ""
        return [f"{name}: {type(value).__name__}, {len(value)} items{of} = {short_repr(value)}"]
    if isinstance(value, type):
        return _class(name, value)
    if inspect.isroutine(value) or isinstance(value, type(lambda: 0)):
        return _function(name, value)
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:  # other array libraries
        return [f"{name}: {_type_name(value)}, shape {_shape(shape)}, dtype {dtype}"]
    size = ""
    if hasattr(type(value), "__len__"):
        try:
            size = f", len {len(value)}"
        except Exception:
            pass
    return [f"{name}: {_type_name(value)}{size} = {short_repr(value)}"]


def _first(it: Iterable[Any], n: int) -> list[Any]:
    out = []
    for v in it:
        if len(out) >= n:
            break
        out.append(v)
    return out


def fit(text: str, max_tokens: int, count: Callable[[str], int] = approx_tokens) -> str | None:
    """``text`` cut at line boundaries (then characters) to ``max_tokens``; None if nothing
    useful fits."""
    if count(text) <= max_tokens:
        return text
    lines = text.splitlines()
    while len(lines) > 1:
        lines.pop()
        cut = "\n".join(lines + ["  …"])
        if count(cut) <= max_tokens:
            return cut
    chars = max_tokens * 7 // 2 - 1  # the most whose estimate fits, less one for "…"
    return lines[0][:chars] + "…" if chars > 20 else None


# --- which names -----------------------------------------------------------------------------------
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def names_in_text(text: str, namespace: Mapping[str, Any]) -> list[str]:
    """Variable names a question mentions: identifiers of the namespace (one-letter ones only in
    backticks or braces, where they are surely code)."""
    coded = set(re.findall(r"[`{]\s*([A-Za-z_]\w*)", text))
    out = []
    for w in dict.fromkeys(_IDENT.findall(text)):
        if w in namespace and is_user_variable(w, namespace[w]) and (len(w) > 1 or w in coded):
            out.append(w)
    return out


def is_user_variable(name: str, value: Any) -> bool:
    if name.startswith("_") or name in HIDDEN or isinstance(value, types.ModuleType):
        return False
    # IPython's exit/quit/get_ipython live in the namespace too; they are not the user's data
    mod = getattr(type(value), "__module__", "") or ""
    return not mod.startswith(("IPython.", "ipykernel.", "minicpm_magics"))


# --- several variables within budgets ------------------------------------------------------------
@dataclass
class VarText:
    name: str
    text: str
    tokens: int


def lookup(name: str, namespace: Mapping[str, Any]) -> tuple[bool, Any]:
    """``name`` or a dotted ``obj.attr`` path (attributes only: nothing is called)."""
    head, *rest = name.split(".")
    if head not in namespace:
        return False, None
    value = namespace[head]
    for attr in rest:
        try:
            value = getattr(value, attr)
        except Exception:
            return False, None
    return True, value


def variable_context(names: Iterable[str], namespace: Mapping[str, Any], *, each_tokens: int,
                     total_tokens: int, count: Callable[[str], int] = approx_tokens
                     ) -> tuple[list[VarText], list[str]]:
    """Descriptions of ``names`` (in order), each ≤ ``each_tokens``, together ≤
    ``total_tokens``. Returns (described, left out: missing, skipped or over budget)."""
    out: list[VarText] = []
    left: list[str] = []
    used = 0
    for name in dict.fromkeys(names):
        found, value = lookup(name, namespace)
        text = describe(name, value) if found else None
        text = fit(text, min(each_tokens, total_tokens - used), count) if text else None
        if text is None:
            left.append(name)
            continue
        n = count(text)
        used += n
        out.append(VarText(name, text, n))
    return out, left


def list_variables(namespace: Mapping[str, Any], limit: int = LIST_MAX) -> list[dict[str, str]]:
    """The user's variables for a picker: name, type and the one-line summary."""
    rows = []
    for name in sorted(namespace):
        value = namespace[name]
        if not is_user_variable(name, value):
            continue
        line = describe(name, value, detail=False)
        if line is None:
            continue
        rows.append({"name": name, "type": _type_name(value),
                     "summary": line.split(": ", 1)[-1]})
        if len(rows) >= limit:
            break
    return rows
