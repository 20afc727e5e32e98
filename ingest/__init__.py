"""Ingest: turn video files, image folders and cameras into frames on Redis Streams."""

from facestream.schemas import redact

from .camera import CameraAgent, run_cameras
from .capture import open_source
from .publisher import FramePublisher
from .replay import ReplayStats, replay
from .settings import CameraSettings, IngestSettings
from .sources import EncodedFrame, encode_jpeg, iter_frames, native_fps

__all__ = [
    "CameraAgent",
    "CameraSettings",
    "EncodedFrame",
    "FramePublisher",
    "IngestSettings",
    "ReplayStats",
    "encode_jpeg",
    "iter_frames",
    "native_fps",
    "open_source",
    "redact",
    "replay",
    "run_cameras",
]
