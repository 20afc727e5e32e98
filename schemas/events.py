"""Visit events of `fs:{G}:events`: a face track appeared, was identified, left; a person seen."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .entries import ENTRY_ID_PATTERN, Int64, clip
from .errors import InvalidMessage
from .frames import SCHEMA_VERSION, StreamFields
from .keys import GROUP_NAME_PATTERN

__all__ = ["Event", "EventDeadLetter", "EventType", "IdentitySource"]

#: appeared: a track starts; identified: its identity settles or changes; left: it ends;
#: seen: an identity was seen anywhere on the site (at most once per cooldown).
EventType = Literal["appeared", "identified", "left", "seen"]

#: Where a face's identity came from: the model on this frame, its track's vote, or the cache.
IdentitySource = Literal["model", "track", "cache"]


class Event(BaseModel):
    """One visit event; fields a type does not use stay at their defaults."""

    # No NaN or infinity: JSON has none, and the page's JSON refuses them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    v: Int64 = SCHEMA_VERSION
    type: EventType
    group: str
    camera: str
    track: str = Field(description="Track id, unique per group (`seen`: the track that saw).")
    ts: Int64 = Field(description="Time of the frame that caused the event, epoch milliseconds.")
    frame_id: Annotated[str, Field(pattern=ENTRY_ID_PATTERN)] = Field(
        description="Stream id of that frame on `fs:{G}:frames`."
    )
    identity: str | None = Field(None, description="The track's identity, None while unknown.")
    similarity: float | None = Field(None, description="Similarity behind the identity.")
    first_ts: Int64 | None = Field(None, description="The track's first frame (appeared, left).")
    last_ts: Int64 | None = Field(None, description="The track's last frame (left).")
    dwell_ms: Int64 | None = Field(None, ge=0, description="last_ts - first_ts (left).")
    frames: Int64 | None = Field(None, ge=0, description="Frames the track was seen in (left).")
    best_similarity: float | None = Field(None, description="Highest similarity (left).")
    snapshot: str | None = Field(
        None, description="Key of the track's best face crop (JPEG, expires), if kept."
    )

    def to_fields(self) -> dict[str, str | int]:
        """Fields for XADD: present values as text, None left out."""
        return {
            key: (orjson.dumps(value).decode() if isinstance(value, float) else value)
            for key, value in self.model_dump().items()
            if value is not None
        }

    @classmethod
    def from_fields(cls, fields: StreamFields) -> Event:
        """Parse one events-stream entry, raising InvalidMessage with the reason."""
        try:
            return cls.model_validate({k.decode(): v.decode() for k, v in fields.items()})
        except (UnicodeDecodeError, ValidationError) as exc:
            raise InvalidMessage(f"invalid event entry: {exc}") from exc

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


class EventDeadLetter(BaseModel):
    """An event a bridge could not deliver, kept with the reason on `fs:{G}:events:dead`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_id: Annotated[str, Field(pattern=ENTRY_ID_PATTERN)] = Field(
        description="The event's id on `fs:{G}:events`."
    )
    group: Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
    bridge: str = Field(description="Which bridge gave up: `mqtt` or `webhook`.")
    reason: str = Field(description="Why, in one line (at most 300 characters).")
    attempts: Int64 = Field(ge=0, description="Deliveries tried before giving up.")
    event: str = Field(description="The event as JSON, as it is on the events stream.")

    @field_validator("reason")
    @classmethod
    def _short_reason(cls, reason: str) -> str:
        return clip(reason, 300)

    def to_fields(self) -> dict[str, str | int]:
        return self.model_dump()

    @classmethod
    def from_fields(cls, fields: StreamFields) -> EventDeadLetter:
        """Parse one entry of `fs:{G}:events:dead`, raising InvalidMessage with the reason."""
        try:
            return cls.model_validate({k.decode(): v.decode() for k, v in fields.items()})
        except (UnicodeDecodeError, ValidationError) as exc:
            raise InvalidMessage(f"invalid event dead letter: {exc}") from exc
