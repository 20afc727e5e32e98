"""Camera health as written by camera agents to `fs:cameras:<id>` and read by `status`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .entries import Int64, loads_as
from .keys import GROUP_NAME_PATTERN

__all__ = ["CameraHealth", "CameraState"]

CameraState = Literal["connecting", "streaming", "backing-off", "stopped"]


class CameraHealth(BaseModel):
    """One camera's state and counters, refreshed every few seconds by its agent."""

    # No NaN or infinity: the page's JSON refuses them (one such record broke the overview).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    camera: str = Field(description="Read back, the camera of the key wins over this one.")
    group: Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
    source: str = Field(description="The source URL with any credentials redacted.")
    state: CameraState = "connecting"
    fps_in: float = Field(0.0, description="Frames read from the source per second.")
    fps_out: float = Field(0.0, description="Frames published per second.")
    frames_in: Int64 = 0
    frames_out: Int64 = 0
    dropped: Int64 = Field(
        0, ge=0, description="Frames read but not published, for any reason (the sum below + lost)."
    )
    skipped: Int64 = Field(
        0, ge=0, description="Of those, frames replaced by a newer one before sending (fps limit)."
    )
    shed: Int64 = Field(
        0, ge=0, description="Of those, frames dropped because the workers were behind (load)."
    )
    reconnects: Int64 = 0
    redis_errors: Int64 = 0
    last_error: str | None = None
    last_error_at: Int64 | None = Field(None, description="Epoch milliseconds.")
    updated_at: Int64 = 0

    @classmethod
    def loads(cls, raw: bytes) -> CameraHealth:
        """Parse a health record, raising InvalidMessage with the reason."""
        return loads_as(cls, raw, "camera health")
