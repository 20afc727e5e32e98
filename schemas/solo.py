"""A solo attempt on record: a redelivered entry being tried alone, by whom, since when.

Kept in the group's hash `fs:{G}:solo` (keys.solo), one field per entry id, so that the next
worker to claim the entry knows whether the last attempt ended without a result on its own.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SoloAttempt"]


class SoloAttempt(BaseModel):
    """The latest solo attempt of one entry, and how many before it ended without a result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_id: str = Field(description="The frames stream entry tried alone.")
    consumer: str = Field(description="The worker (consumer name) trying it.")
    since: int = Field(ge=0, description="When the attempt began, epoch ms.")
    failed: int = Field(
        0, ge=0, description="Earlier solo attempts that ended without a result (not this one)."
    )
    excused: bool = Field(
        False,
        description="It ended for a reason not its own (its worker was being stopped, or lived "
        "on after an error): it does not count toward max_deliveries.",
    )

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> SoloAttempt:
        return cls.model_validate_json(raw)
