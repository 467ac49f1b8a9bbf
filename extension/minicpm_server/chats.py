"""Saved chats: one JSON file per chat, written atomically (temp file + fsync + rename).

A crash at any point leaves either the old file or the new one, never a torn one: the new
content goes to a temp file in the same folder, is fsynced, then ``os.replace``d over the old
name (atomic on POSIX and Windows), and the folder is fsynced so the rename itself survives.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .errors import RequestError

log = logging.getLogger("minicpm_server")

CHAT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TMP_PREFIX = ".tmp-"


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
        """Remove temp files left by a crash mid-write (the saved files are intact)."""
        n = 0
        if self.folder.is_dir():
            for p in self.folder.glob(_TMP_PREFIX + "*"):
                try:
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
            rows.append({"id": p.stem, "title": data.get("title", ""),
                         "updated": data.get("updated"),
                         "n_messages": len(data.get("messages", []))})
        rows.sort(key=lambda r: r["updated"] or 0, reverse=True)
        return rows

    def get(self, chat_id: str) -> dict[str, Any]:
        p = self._path(chat_id)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RequestError(404, f"no saved chat {chat_id!r}") from None
        except ValueError as e:
            raise RequestError(500, f"chat file {p} is damaged: {e}") from e
        data["id"] = chat_id
        return data

    def save(self, chat_id: str, title: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(title, str):
            raise RequestError(400, "title must be a string")
        data = {"id": check_id(chat_id), "title": title, "messages": check_messages(messages),
                "updated": time.time()}
        with self._lock:
            self._ensure()
            atomic_write_json(self._path(chat_id), data)
        return data

    def append(self, chat_id: str, new_messages: list[dict[str, Any]],
               title: str | None = None) -> dict[str, Any]:
        """Add messages to a chat, creating it if needed (used by the WebSocket's chat_id)."""
        with self._lock:
            try:
                data = self.get(chat_id)
            except RequestError as e:
                if e.status != 404:
                    raise
                data = {"title": title or "", "messages": []}
            data["messages"] = list(data.get("messages", [])) + new_messages
            data.update(id=chat_id, updated=time.time())
            self._ensure()
            atomic_write_json(self._path(chat_id), data)
        return data

    def delete(self, chat_id: str) -> None:
        with self._lock:
            try:
                self._path(chat_id).unlink()
            except FileNotFoundError:
                raise RequestError(404, f"no saved chat {chat_id!r}") from None
