"""Ingest: turn video files, image folders and cameras into frames on Redis Streams."""

from .publisher import FramePublisher
from .replay import ReplayStats, replay
from .settings import IngestSettings
from .sources import EncodedFrame, encode_jpeg, iter_frames, native_fps

__all__ = [
    "EncodedFrame",
    "FramePublisher",
    "IngestSettings",
    "ReplayStats",
    "encode_jpeg",
    "iter_frames",
    "native_fps",
    "replay",
]
