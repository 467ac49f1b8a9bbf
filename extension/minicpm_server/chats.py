"""Saved chats: one JSON file per chat, written atomically (temp file + fsync + rename).

A crash at any point leaves either the old file or the new one, never a torn one: the new
content goes to a temp file in the same folder, is fsynced, then ``os.replace``d over the old
name (atomic on POSIX and Windows), and the folder is fsynced so the rename itself survives.

Two servers may share the folder (the default is per user, not per server): every write holds
a shared ``flock`` on ``.lock`` in the folder from temp file to rename, and the start-up
clean-up of crashed writes' temp files takes it exclusively, without waiting (if a write is
under way it skips; the next start cleans up). So one server's clean-up never deletes
another's temp file mid-write. Where ``fcntl`` is missing (Windows), clean-up removes only
temp files older than an hour.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .errors import RequestError

log = logging.getLogger("minicpm_server")

CHAT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TMP_PREFIX = ".tmp-"
_LOCK_NAME = ".lock"
_STALE_TMP_S = 3600.0  # without fcntl: a temp file this old is from a crash, not a write


@contextlib.contextmanager
def folder_lock(folder: Path, exclusive: bool = False, wait: bool = True) -> Iterator[bool]:
    """An advisory lock on ``folder/.lock`` shared between processes. Yields False when
    ``wait`` is False and another process holds it in a conflicting mode."""
    if fcntl is None:  # pragma: no cover - Windows
        yield True
        return
    fd = os.open(folder / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_id(chat_id: str) -> str:
    if not isinstance(chat_id, str) or not CHAT_ID.match(chat_id):
        raise RequestError(400, "chat id must be 1-64 letters, digits, '-' or '_'")
    return chat_id


def check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise RequestError(400, "messages must be a list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(400, f"messages[{i}] must be an object with a 'role'")
    return messages


def atomic_write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ChatStore:
    """Thread-safe: the handlers call it from the default executor (fsync blocks)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, chat_id: str) -> Path:
        return self.folder / f"{check_id(chat_id)}.json"

    def cleanup(self) -> int:
        """Remove temp files left by a crash mid-write (the saved files are intact). Skipped
        while another process writes into the folder (see the module's docstring)."""
        n = 0
        if not self.folder.is_dir():
            return n
        with folder_lock(self.folder, exclusive=True, wait=False) as locked:
            if not locked:
                log.info("chats folder %s is being written by another server; no clean-up",
                         self.folder)
                return n
            for p in self.folder.glob(_TMP_PREFIX + "*"):
                try:
                    if fcntl is None and time.time() - p.stat().st_mtime < _STALE_TMP_S:
                        continue  # pragma: no cover - Windows: maybe another's write
                    p.unlink()
                    n += 1
                except OSError:
                    pass
        return n

    def list(self) -> list[dict[str, Any]]:
        rows = []
        if not self.folder.is_dir():
            return rows
        for p in self.folder.glob("*.json"):
            if not CHAT_ID.match(p.stem):
                continue
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                log.warning("skipping unreadable chat file %s: %s", p, e)
                continue
            row = _summary(p.stem, data)
            if row is None:  # a file this server did not write: skip it, list the rest
                log.warning("skipping chat file %s: not a saved chat (an object with a "
                            "'messages' list)", p)
                continue
            rows.append(row)
        rows.sort(key=lambda r: r["updated"] or 0, reverse=True)
        return rows

    def get(self, chat_id: str) -> dict[str, Any]:
        p = self._path(chat_id)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RequestError(404, f"no saved chat {chat_id!r}") from None
        except ValueError as e:
            log.error("chat file %s is damaged: %s", p, e)
            raise RequestError(500, f"saved chat {chat_id!r} is damaged (see the server's "
                                    "log)") from e
        if _summary(chat_id, data) is None:
            log.error("chat file %s is not a saved chat", p)
            raise RequestError(500, f"saved chat {chat_id!r} is damaged (see the server's log)")
        data["id"] = chat_id
        return data

    def save(self, chat_id: str, title: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(title, str):
            raise RequestError(400, "title must be a string")
        data = {"id": check_id(chat_id), "title": title, "messages": check_messages(messages),
                "updated": time.time()}
        with self._lock:
            self._ensure()
            with folder_lock(self.folder):
                atomic_write_json(self._path(chat_id), data)
        return data

    def delete(self, chat_id: str) -> None:
        with self._lock:
            try:
                self._path(chat_id).unlink()
            except FileNotFoundError:
                raise RequestError(404, f"no saved chat {chat_id!r}") from None


def _summary(chat_id: str, data: Any) -> dict[str, Any] | None:
    """The list row of a saved chat, or None when ``data`` is not shaped like one."""
    if not isinstance(data, dict) or not isinstance(data.get("messages", []), list):
        return None
    title, updated = data.get("title", ""), data.get("updated")
    if not isinstance(title, str) or isinstance(updated, bool) \
            or not isinstance(updated, (int, float, type(None))):
        return None
    return {"id": chat_id, "title": title, "updated": updated,
            "n_messages": len(data.get("messages", []))}
