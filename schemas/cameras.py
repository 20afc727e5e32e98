"""Camera health as written by camera agents to `fs:cameras:<id>` and read by `status`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CameraHealth", "CameraState"]

CameraState = Literal["connecting", "streaming", "backing-off", "stopped"]


class CameraHealth(BaseModel):
    """One camera's state and counters, refreshed every few seconds by its agent."""

    model_config = ConfigDict(extra="forbid")

    camera: str
    group: str
    source: str = Field(description="The source URL with any credentials redacted.")
    state: CameraState = "connecting"
    fps_in: float = Field(0.0, description="Frames read from the source per second.")
    fps_out: float = Field(0.0, description="Frames published per second.")
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = Field(
        0, ge=0, description="Frames read but not published, for any reason (the sum below + lost)."
    )
    skipped: int = Field(
        0, ge=0, description="Of those, frames replaced by a newer one before sending (fps limit)."
    )
    shed: int = Field(
        0, ge=0, description="Of those, frames dropped because the workers were behind (load)."
    )
    reconnects: int = 0
    redis_errors: int = 0
    last_error: str | None = None
    last_error_at: int | None = Field(None, description="Epoch milliseconds.")
    updated_at: int = 0
