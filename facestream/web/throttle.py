"""Failed logins and bearer tokens, per client, with back-off: guessing a secret gets slow.

After `free` failures in a row a client waits `backoff_s`, doubling with each further
failure up to `max_s`; while it waits its attempts are refused unchecked (429), so a guess
costs the guesser time whether or not it was right. A success ends the wait. Clients are the
peer's address (behind a reverse proxy, the X-Forwarded-For one uvicorn trusts: docs/web.md).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Literal

import structlog

__all__ = ["AuthKind", "Throttle"]

log = structlog.get_logger("web")
AuthKind = Literal["login", "bearer"]
_CLIENTS = 10_000  # remembered at most; the oldest are forgotten first


@dataclass
class _Record:
    failures: int = 0
    until: float = 0.0  # monotonic time the wait ends


class Throttle:
    """Per-client failure counts and waits; `failures` and `throttled` for /metrics."""

    def __init__(self, free: int, backoff_s: float, max_s: float) -> None:
        self.free, self.backoff_s, self.max_s = free, backoff_s, max_s
        self.failures: Counter[AuthKind] = Counter()
        self.throttled: Counter[AuthKind] = Counter()
        self._clients: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, client: str, kind: AuthKind) -> float:
        """Seconds `client` must still wait before its next attempt is checked (0: none);
        a refused attempt is counted."""
        with self._lock:
            record = self._clients.get(client)
            left = record.until - time.monotonic() if record else 0.0
        if left > 0:
            self.throttled[kind] += 1
            return left
        return 0.0

    def failed(self, client: str, kind: AuthKind) -> None:
        with self._lock:
            record = self._clients.pop(client, None) or _Record()
            self._clients[client] = record  # most recent last
            while len(self._clients) > _CLIENTS:
                self._clients.popitem(last=False)
            record.failures += 1
            over = record.failures - self.free
            wait = min(self.max_s, self.backoff_s * 2 ** (over - 1)) if over > 0 else 0.0
            record.until = time.monotonic() + wait
        self.failures[kind] += 1
        log.warning(
            "authentication refused",
            kind=kind,
            client=client,
            failures=record.failures,
            wait_s=wait,
        )

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)
