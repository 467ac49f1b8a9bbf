"""Bounded numbers as GBNF: ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum``.

Tool schemas use them all the time (a cell number ``minimum: 1``, a count ``maximum: 100``).
The grammar converter we build on ignores them, so the output could break the schema. Like
llama.cpp's own converter, integers get an exact digit grammar for their range (no leading
zeros, no "-0", the open side limited to the 16 digits of the plain integer rule). Numbers
get one too when their bounds are whole numbers: an integral part below the top bound with
any fraction, or the top bound itself with a zero fraction; no exponent (a subset of valid
JSON numbers, so whatever is generated validates). Other numeric bounds are refused up front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import SchemaError

BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
DIGITS = 16  # the plain integer rule allows up to 16 digits; an open side stops there too
LIMIT = 10**DIGITS - 1
MAX_BOUND = 10**15  # bounds beyond this gain nothing over the plain rule


def has_bounds(schema: Mapping[str, Any]) -> bool:
    return any(k in schema for k in BOUND_KEYS)


def check_bounds(schema: Mapping[str, Any], where: str) -> None:
    """Refuse bounds the grammar cannot enforce exactly, naming the place and the reason."""
    types = schema.get("type")
    types = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
    if not types or any(t not in ("integer", "number") for t in types):
        raise SchemaError(f"{where}: minimum/maximum need 'type': 'integer' or 'number' "
                          "(the output could not be guaranteed to validate otherwise)")
    for key in BOUND_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise SchemaError(f"{where}.{key} must be a number (draft-04's boolean "
                              "exclusiveMinimum/Maximum is not supported)")
        if abs(value) > MAX_BOUND:
            raise SchemaError(f"{where}.{key}: bounds are limited to ±{MAX_BOUND:.0e}")
        if "number" in types and value != int(value):
            raise SchemaError(f"{where}.{key}: a 'number' can be bounded by whole numbers only "
                              "(use 'integer', or a whole-number bound)")
    lo, hi, _, _ = _limits(schema)
    if lo is not None and hi is not None and lo > hi:
        raise SchemaError(f"{where}: minimum/maximum leave no value")


def _limits(schema: Mapping[str, Any]) -> tuple[int | None, int | None, bool, bool]:
    """(lowest, highest, lowest excluded, highest excluded), as whole numbers, the stricter of
    minimum / exclusiveMinimum (and maximum / exclusiveMaximum) when both are given."""
    integer = "number" not in (schema.get("type") if isinstance(schema.get("type"), list)
                               else [schema.get("type")])
    lo: int | None = None
    hi: int | None = None
    lo_open = hi_open = False
    if "minimum" in schema:
        lo = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema:
        x = schema["exclusiveMinimum"]
        cand, opened = (math.floor(x) + 1, False) if integer else (int(x), True)
        if lo is None or cand > lo or (cand == lo and opened):
            lo, lo_open = cand, opened
    if "maximum" in schema:
        hi = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema:
        x = schema["exclusiveMaximum"]
        cand, opened = (math.ceil(x) - 1, False) if integer else (int(x), True)
        if hi is None or cand < hi or (cand == hi and opened):
            hi, hi_open = cand, opened
    if lo is not None and hi is not None and lo == hi and (lo_open or hi_open):
        return lo, lo - 1, False, False  # an open interval of width 0: empty
    return lo, hi, lo_open, hi_open


def integer_rule(lo: int | None, hi: int | None) -> str:
    """GBNF body for the whole numbers from lo to hi (None: open, up to 16 digits)."""
    lo = -LIMIT if lo is None else lo
    hi = LIMIT if hi is None else hi
    if lo > hi:
        raise SchemaError("minimum/maximum leave no value")
    alts = []
    if lo < 0:  # the negative part, written as "-" and a magnitude (never "-0")
        alts.append(f'"-" ({_naturals(max(1, -hi), -lo)})')
    if hi >= 0:
        alts.append(_naturals(max(0, lo), hi))
    return " | ".join(alts)


def number_rule(lo: int | None, hi: int | None, lo_open: bool, hi_open: bool) -> str:
    """GBNF body for decimals between whole-number bounds (None: open); open ends excluded."""
    frac = '("." [0-9]{1,16})?'
    zero = '("." "0"{1,16})?'
    nonzero = '"." [0-9]{0,15} [1-9]'  # a fraction that is not all zeros

    def magnitudes(p: int, q: int | None, p_open: bool, q_open: bool) -> list[str]:
        """Non-negative decimals m with p <= m <= q (< / > at open ends; q None: no top)."""
        out = []
        if p_open:  # p itself is out, p.xxx with a non-zero fraction is in
            if q is None or p < q:
                out.append(f'"{p}" {nonzero}')
            p += 1
        if q is None:
            return out + [f"({_naturals(p, LIMIT)}) {frac}"]
        if p <= q - 1:
            out.append(f"({_naturals(p, q - 1)}) {frac}")
        if not q_open and p <= q:
            out.append(f'"{q}" {zero}')
        return out

    alts = []
    if lo is None or lo < 0:  # negative values: "-" and a magnitude in (max(0, -hi), -lo]
        p = 0 if hi is None else max(0, -hi)
        neg = magnitudes(p, None if lo is None else -lo, hi is None or hi >= 0 or hi_open,
                         lo_open)
        alts += [f'"-" ({a})' for a in neg]
    if hi is None or hi >= 0:
        p = 0 if lo is None else max(0, lo)
        alts += magnitudes(p, hi, lo_open and lo is not None and lo >= 0, hi_open)
    if not alts:
        raise SchemaError("minimum/maximum leave no value")
    return " | ".join(alts)


def bounded_rule(schema: Mapping[str, Any]) -> str:
    """The rule body (with the trailing ``space``) for a bounded integer or number schema."""
    lo, hi, lo_open, hi_open = _limits(schema)
    body = integer_rule(lo, hi) if schema.get("type") == "integer" \
        else number_rule(lo, hi, lo_open, hi_open)
    return f"({body}) space"


def _naturals(lo: int, hi: int) -> str:
    """Whole numbers lo..hi (0 <= lo <= hi) without leading zeros, one alternative per length."""
    alts: list[str] = []
    full: list[int] = []  # lengths fully covered, merged into one [1-9] [0-9]{a,b}

    def flush() -> None:
        if full:
            a, b = full[0] - 1, full[-1] - 1
            alts.append("[1-9] " + ("[0-9]" if a == b == 1 else f"[0-9]{{{a},{b}}}"))
            full.clear()

    for n in range(len(str(lo)), len(str(hi)) + 1):
        first, last = (0 if n == 1 else 10 ** (n - 1)), 10**n - 1
        a, b = max(lo, first), min(hi, last)
        if n > 1 and a == first and b == last:
            full.append(n)
            continue
        flush()
        alts.append(_same_length(str(a), str(b)))
    flush()
    return " | ".join(alts)


def _same_length(a: str, b: str) -> str:
    """Digit strings of one length from a to b (a <= b), as a GBNF sequence."""
    if a == b:
        return f'"{a}"'
    i = 0
    while a[i] == b[i]:
        i += 1
    head = f'"{a[:i]}" ' if i else ""
    x, y, rest = int(a[i]), int(b[i]), len(a) - i - 1
    if rest == 0:
        return f"{head}[{x}-{y}]"
    zeros, nines = "0" * rest, "9" * rest
    tail = "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
    parts = []
    # The first digit x: from a's tail upwards (whole block when a's tail is all zeros).
    low = x if a[i + 1:] == zeros else x + 1
    if a[i + 1:] != zeros:
        parts.append(f'"{x}" ({_same_length(a[i + 1:], nines)})')
    high = y if b[i + 1:] == nines else y - 1
    if low <= high:
        parts.append(f"{_digit_class(low, high)} {tail}")
    if b[i + 1:] != nines:
        parts.append(f'"{y}" ({_same_length(zeros, b[i + 1:])})')
    return f"{head}({' | '.join(parts)})"


def _digit_class(x: int, y: int) -> str:
    return f"[{x}]" if x == y else f"[{x}-{y}]"
