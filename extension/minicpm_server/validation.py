"""The one set of request rules for every route and socket: the chat socket, the completion
socket, ``/v1/chat/completions`` and ``/v1/completions`` all call these, so a field is
accepted or refused the same way wherever it arrives.

The rules are OpenAI's where OpenAI has one (``max_tokens`` is a JSON integer: ``8.0`` is
refused, as OpenAI refuses it; a stop string is non-empty) plus the server's caps
(``c.MiniCPM.max_tokens_limit``, ``c.MiniCPM.max_stop``)."""

from __future__ import annotations

import math
from typing import Any

from minicpm.sampling import SamplingParams

from .config import MiniCPM
from .errors import RequestError

MAX_STOP_CHARS = 256
MAX_ID_CHARS = 128
NUMBERS = ("temperature", "top_p", "repetition_penalty", "frequency_penalty",
           "presence_penalty")
INTEGERS = ("top_k", "seed", "top_logprobs")


def is_integer(v: Any) -> bool:
    """A JSON integer: not a bool, not a float (not even 8.0)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_whole(v: Any, name: str, lo: int, hi: int) -> int:
    """An integer field with a range (``n``, ``budget``…)."""
    if not is_integer(v) or not lo <= v <= hi:
        raise RequestError(400, f"{name} must be a whole number from {lo} to {hi}")
    return v


def check_request_id(rid: Any) -> str:
    """A socket frame's ``id``: a string (or integer) of 1-128 characters."""
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "" \
            or len(str(rid)) > MAX_ID_CHARS:
        raise RequestError(400, f"a frame needs an 'id' (a string of 1-{MAX_ID_CHARS} "
                                "characters)")
    return str(rid)


def check_max_tokens(value: Any, cfg: MiniCPM, default: int | None = None,
                     cap: int | None = None) -> int | None:
    """``max_tokens``: an integer from 1 to the server's limit (and the route's ``cap``);
    ``default`` when absent."""
    if value is None:
        return default
    most = min(cfg.max_tokens_limit, cap or cfg.max_tokens_limit)
    where = "" if cap and cap < cfg.max_tokens_limit else " (c.MiniCPM.max_tokens_limit)"
    if not is_integer(value):
        raise RequestError(400, f"max_tokens must be a whole number (a JSON integer) from 1 "
                                f"to {most}{where}")
    if not 1 <= value <= most:
        raise RequestError(400, f"max_tokens must be between 1 and {most}{where}")
    return value


def check_stop(stop: Any, cfg: MiniCPM) -> list[str]:
    """``stop``: a non-empty string or a list of them, at most ``c.MiniCPM.max_stop``."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(400, "stop must be a non-empty string or a list of them")
    if len(stops) > cfg.max_stop:
        raise RequestError(400, f"{len(stops)} stop strings; the limit is {cfg.max_stop} "
                                "(c.MiniCPM.max_stop)")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise RequestError(400, f"a stop string is longer than {MAX_STOP_CHARS} characters")
    return stops


def check_sampling(sampling: Any, cfg: MiniCPM, default_max_tokens: int | None = None,
                   cap: int | None = None) -> dict[str, Any]:
    """Sampling options (engine names) → a checked copy; a 400 that names the field for
    anything wrong, including options the engine does not know."""
    if sampling is None:
        sampling = {}
    if not isinstance(sampling, dict):
        raise RequestError(400, "sampling must be an object")
    out = dict(sampling)
    max_tokens = check_max_tokens(out.get("max_tokens"), cfg, default_max_tokens, cap)
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if out.get("stop") is not None:
        out["stop"] = check_stop(out["stop"], cfg)
    for k in NUMBERS:
        v = out.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            raise RequestError(400, f"{k} must be a number")
    for k in INTEGERS:
        v = out.get(k)
        if v is not None and not is_integer(v):
            raise RequestError(400, f"{k} must be a whole number")
    try:
        SamplingParams.from_kwargs(**out)  # names any other bad option or value
    except (ValueError, TypeError) as e:
        raise RequestError(400, str(e)) from e
    return out
