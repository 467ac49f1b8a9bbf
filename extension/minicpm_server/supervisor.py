"""What the server remembers about engine crashes: recent crash times (restart with backoff,
stop after repeated crashes) and models that killed the engine while loading (not loaded again
at start-up until the user chooses them again; kept in a JSON file across restarts)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("minicpm_server")

CRASH_WINDOW_S = 300.0  # crashes this close together count as "repeated"
MAX_CRASHES = 3  # in the window: stop restarting
BACKOFF_S = (0.0, 1.0, 3.0)  # wait before the 1st, 2nd, 3rd restart in the window


class CrashPolicy:
    def __init__(self, bad_models_file: str | Path | None = None):
        self.crashes: list[float] = []
        self.total = 0
        self.path = Path(bad_models_file) if bad_models_file else None

    # --- restarts ------------------------------------------------------------------------------
    def recent(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S]
        return len(self.crashes)

    def record(self) -> None:
        self.crashes.append(time.monotonic())
        self.total += 1

    def may_restart(self) -> bool:
        return self.recent() < MAX_CRASHES

    def backoff(self) -> float:
        """Seconds to wait before restarting after the crashes in the window."""
        n = self.recent()
        return BACKOFF_S[min(n, len(BACKOFF_S)) - 1] if n else 0.0

    def reset(self) -> None:
        """The user chose a model: start counting again."""
        self.crashes.clear()

    # --- models that crash while loading -------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def bad(self, key: str) -> dict[str, Any] | None:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) else None

    def mark_bad(self, key: str, reason: str) -> None:
        if self.path is None:
            return
        data = self._read()
        data[key] = {"reason": reason, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("could not remember %s as a bad model: %s", key, e)

    def forget(self, key: str) -> None:
        data = self._read()
        if key in data and self.path is not None:
            del data[key]
            try:
                self.path.write_text(json.dumps(data, indent=1), encoding="utf-8")
            except OSError:
                pass
