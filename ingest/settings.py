"""Config section owned by the ingest side (composed into the root settings by the CLI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IngestSettings"]


class IngestSettings(BaseModel):
    """How frames are encoded and how far a sender may run ahead of the workers."""

    model_config = ConfigDict(extra="forbid")

    frames_maxlen: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Approximate cap of each frames stream (XADD MAXLEN ~).",
    )
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of re-encoded frames.")
    max_side: int | None = Field(
        None, ge=64, le=8192, description="Downscale frames whose longer side exceeds this."
    )
    max_backlog: int = Field(
        500,
        ge=0,
        description="Replay pauses while this many of its frames are unread by the workers "
        "(0: never); keep it under frames_maxlen so MAXLEN never trims an unread frame.",
    )
