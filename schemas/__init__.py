"""The wire contract of facestream: stream entries, key layout and errors (no other deps)."""

from . import keys
from .cameras import CameraHealth, CameraState
from .errors import (
    FacestreamError,
    GalleryError,
    InvalidFrame,
    InvalidGroup,
    InvalidMessage,
    ModelError,
    RedisServerError,
    SourceError,
)
from .events import Event, EventType, IdentitySource
from .frames import SCHEMA_VERSION, Frame, FrameLimits, StreamFields, jpeg_size
from .gallery import GalleryExport, Identity
from .results import CachedRecognition, DeadLetter, Face, FaceQuality, Result, UnnamedReason, clip
from .urls import redact, redact_event, without_userinfo

__all__ = [
    "SCHEMA_VERSION",
    "CachedRecognition",
    "CameraHealth",
    "CameraState",
    "DeadLetter",
    "Event",
    "EventType",
    "Face",
    "FaceQuality",
    "FacestreamError",
    "Frame",
    "FrameLimits",
    "GalleryError",
    "GalleryExport",
    "Identity",
    "IdentitySource",
    "InvalidFrame",
    "InvalidGroup",
    "InvalidMessage",
    "ModelError",
    "RedisServerError",
    "Result",
    "SourceError",
    "StreamFields",
    "UnnamedReason",
    "clip",
    "jpeg_size",
    "keys",
    "redact",
    "redact_event",
    "without_userinfo",
]
