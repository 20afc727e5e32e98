"""Config section owned by the ingest side (composed into the root settings by the CLI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from facestream.schemas.frames import CAMERA_ID_PATTERN
from facestream.schemas.keys import GROUP_NAME_PATTERN

__all__ = ["CameraSettings", "IngestSettings"]


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


class CameraSettings(BaseModel):
    """One live camera: where to read it and how to sample, encode and survive it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=CAMERA_ID_PATTERN, description="Camera id carried by its frames.")
    group: str = Field(pattern=GROUP_NAME_PATTERN, description="Camera group (frames stream).")
    source: str = Field(
        description="rtsp://…, http(s)://… (MJPEG stream or JPEG snapshot), /dev/videoN or a "
        "device index, or a video file."
    )
    substream: str | None = Field(
        None,
        description="The camera's low-resolution stream (rtsp://…/sub, …): when set, the agent "
        "reads and publishes it instead of `source`, at a fraction of the decoding cost.",
    )
    kind: Literal["auto", "rtsp", "mjpeg", "snapshot", "device", "file"] = Field(
        "auto", description="How to read the source; auto decides from the URL."
    )
    fps: float = Field(5.0, gt=0, le=60, description="Frames published per second (latest wins).")
    max_side: int | None = Field(None, ge=64, le=8192, description="Downscale larger frames.")
    jpeg_quality: int = Field(85, ge=10, le=100)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    decode_threads: int = Field(
        1,
        ge=0,
        le=16,
        description="FFmpeg decoder threads per camera (0: one per core). One decodes a 1080p "
        "camera in time with the least CPU; more only add threads (and latency) per camera.",
    )
    open_timeout_s: float = Field(10.0, gt=0, le=300)
    read_timeout_s: float = Field(10.0, gt=0, le=300)
    stall_s: float = Field(
        10.0, gt=0, le=600, description="No new frame for this long: reconnect (watchdog)."
    )
    snapshot_interval_s: float = Field(1.0, gt=0, le=3600, description="Snapshot URL poll period.")
    backoff_base_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay.")
    backoff_cap_s: float = Field(30.0, gt=0, le=3600, description="Longest reconnect delay.")
    max_backlog: int = Field(
        50,
        ge=0,
        le=100_000,
        description="Drop (and count) new frames while this many of the camera's published "
        "frames are not yet taken by a worker; 0: never (MAXLEN may then trim unread frames).",
    )
    stable_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A source counts as recovered (reconnect back-off starts over) only after "
        "streaming this long; a source that flaps keeps backing off.",
    )
