"""Per-kernel conversation memory: the last few exchanges, so follow-up questions work."""

from __future__ import annotations

from collections import deque


class Conversation:
    """At most ``max_turns`` user/assistant exchanges and ``max_chars`` of text; the oldest
    go first. The engine also drops old turns if the context still overflows."""

    def __init__(self, max_turns: int = 8, max_chars: int = 12000):
        self.max_turns = max_turns
        self.max_chars = max_chars
        self._turns: deque[tuple[str, str]] = deque()

    def messages(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for user, assistant in self._turns:
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return out

    def add(self, user: str, assistant: str) -> None:
        if self.max_turns <= 0 or not assistant.strip():
            return
        self._turns.append((user, assistant))
        while self._turns and (len(self._turns) > self.max_turns
                               or sum(len(u) + len(a) for u, a in self._turns) > self.max_chars):
            self._turns.popleft()

    def reset(self) -> int:
        n = len(self._turns)
        self._turns.clear()
        return n

    def __len__(self) -> int:
        return len(self._turns)
