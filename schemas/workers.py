"""A worker's heartbeat, as written to `fs:workers:<consumer>` and read by `status`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .entries import Int64, loads_as
from .keys import GROUP_NAME_PATTERN

_Group = Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]

__all__ = ["Heartbeat"]


class Heartbeat(BaseModel):
    """What a running worker refreshes every few seconds (the key expires when it stops)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[_Group] = Field(default_factory=list, description="Groups it serves.")
    quarantined: dict[_Group, str] = Field(
        default_factory=dict, description="Group -> why its keys refuse the worker's commands."
    )
    pid: Int64 = Field(description="The worker process's id.")
    at: Int64 = Field(description="When it was written, epoch milliseconds.")
    counts: dict[str, Int64] = Field(
        default_factory=dict,
        description="Frames read, recognised, cached, dead-lettered, lost to trimming, ...",
    )

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def loads(cls, raw: bytes) -> Heartbeat:
        """Parse a heartbeat, raising InvalidMessage with the reason."""
        return loads_as(cls, raw, "worker heartbeat")
