"""What every stream entry shares: its id, integers JSON can carry, text safe to print."""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

from pydantic import BaseModel, Field, ValidationError

from .errors import InvalidMessage

__all__ = [
    "ENTRY_ID_PATTERN",
    "Int64",
    "clip",
    "entry_id_parts",
    "entry_ms",
    "is_after",
    "loads_as",
    "printable",
    "validate_entry_id",
]

#: A stream entry id as Redis makes them: milliseconds and a sequence number, both 64-bit.
ENTRY_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"
_ENTRY_ID_RE = re.compile(ENTRY_ID_PATTERN)
_U64 = 2**64

M = TypeVar("M", bound=BaseModel)

#: An integer read from an entry: orjson (the bridges, the page) refuses to write anything
#: wider than 64 bits, so one wider value would stop every reader that passes it on.
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]

# CSI (ESC [ … final byte), OSC (ESC ] … BEL or ESC \) and two-byte escapes, then any other
# control character: what a terminal would act on rather than show.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")


def validate_entry_id(entry_id: str | bytes) -> str:
    """`entry_id` as text if it is a whole stream entry id (`<ms>-<seq>`), else InvalidMessage."""
    text = entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else entry_id
    if "-" not in text:
        raise InvalidMessage(f"invalid stream entry id {text[:44]!r}")
    entry_id_parts(text)
    return text


def entry_id_parts(entry_id: str | bytes) -> tuple[int, int]:
    """(milliseconds, sequence) of a stream entry id, comparable as ids are ordered.

    A bare "<ms>" (as XRANGE accepts) has sequence 0. InvalidMessage for anything else.
    """
    text = entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else entry_id
    full = text if "-" in text else f"{text}-0"
    if not _ENTRY_ID_RE.fullmatch(full):
        raise InvalidMessage(f"invalid stream entry id {text[:44]!r}")
    ms, _, seq = full.partition("-")
    if int(ms) >= _U64 or int(seq) >= _U64:
        raise InvalidMessage(f"invalid stream entry id {text[:44]!r}: over 64 bits")
    return int(ms), int(seq)


def entry_ms(entry_id: str | bytes) -> int:
    """When Redis added the entry, epoch milliseconds (the id's first part)."""
    return entry_id_parts(entry_id)[0]


def is_after(entry_id: str | bytes, last: str | bytes) -> bool:
    """True if `entry_id` comes after `last` in its stream ('' comes before everything)."""
    return not last or entry_id_parts(entry_id) > entry_id_parts(last)


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, control characters shown as '?': safe to log or store."""
    shown = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def printable(text: str) -> str:
    """`text` without terminal escapes, other control characters shown as '?': safe to print."""
    return "".join(c if c.isprintable() else "?" for c in _ESCAPES.sub("", text))


def loads_as(model: type[M], raw: bytes, what: str) -> M:
    """A JSON record (a heartbeat, a camera's health) as `model`, or InvalidMessage naming
    `what` and why."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {what}: {exc}") from exc
