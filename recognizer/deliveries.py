"""Stream entries handed to this worker: what a batch takes in, read from XREADGROUP replies."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from facestream.schemas import keys

__all__ = ["Delivery", "read_deliveries", "text"]


@dataclass
class Delivery:
    """One stream entry handed to this worker, and how often it has been delivered."""

    group: str
    entry_id: str
    fields: dict[bytes, bytes] | None  # None: trimmed from the stream before we got it
    deliveries: int
    read_at: float = field(default_factory=time.time)
    # False: Redis 7 dropped it from the pending list as it reported it trimmed; nothing to ack.
    pending: bool = True
    # Solo attempts of it that ended without a result, their worker dead (recognizer/solo.py).
    solo_failures: int = 0

    @property
    def redelivered(self) -> bool:
        """Delivered before: its last delivery ended without a result, so it is tried alone."""
        return self.deliveries > 1


def read_deliveries(response: Any) -> list[Delivery]:
    """The entries of an XREADGROUP reply (`>`: each delivered for the first time)."""
    return [
        Delivery(keys.group_of(stream), text(entry_id), fields, 1)
        for stream, entries in response or []
        for entry_id, fields in entries
    ]


def text(value: bytes | str) -> str:
    """A stream id or name as text, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value
