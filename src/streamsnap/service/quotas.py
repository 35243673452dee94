"""Things held per key (a client address, a token's subject), each key at most its limit."""

from __future__ import annotations


class Quota:
    """Counts what each key holds; `take` refuses past `limit` (0: no limit, nothing is counted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        """What `key` holds now."""
        return self._held.get(key, 0)

    def take(self, key: str | None) -> str | None:
        """One more for `key`: the key to `give_back` later (None when nothing was counted), or raises
        `LookupError` when `key` holds its limit already."""
        if key is None or not self.limit:
            return None
        held = self._held.get(key, 0)
        if held >= self.limit:
            raise LookupError(key)
        self._held[key] = held + 1
        return key

    def give_back(self, key: str | None) -> None:
        """One fewer for `key` (a key `take` returned; None: nothing)."""
        if key is None:
            return
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]

    def __len__(self) -> int:
        return len(self._held)
