"""Ingest: turn video files, image folders and cameras into frames on Redis Streams.

The names below load lazily (`facestream.lazy`): the config reads `CameraSettings` and
`IngestSettings` without loading OpenCV, which only processes that read a video source need.
"""

from typing import TYPE_CHECKING

from facestream.lazy import lazy_exports

if TYPE_CHECKING:
    from facestream.schemas import redact

    from .camera import CameraAgent, run_cameras
    from .capture import open_source
    from .publisher import EncodedFrame, FramePublisher
    from .replay import ReplayStats, replay
    from .settings import CameraSettings, IngestSettings
    from .sources import encode_jpeg, iter_frames, native_fps
else:
    __getattr__ = lazy_exports(
        __name__,
        {
            "redact": "facestream.schemas",
            "CameraAgent": ".camera",
            "run_cameras": ".camera",
            "open_source": ".capture",
            "FramePublisher": ".publisher",
            "ReplayStats": ".replay",
            "replay": ".replay",
            "CameraSettings": ".settings",
            "IngestSettings": ".settings",
            "EncodedFrame": ".publisher",
            "encode_jpeg": ".sources",
            "iter_frames": ".sources",
            "native_fps": ".sources",
        },
    )

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
