"""The wire contract of facestream: stream entries, key layout and errors (no other deps)."""

from . import entries, keys
from .cameras import CameraHealth, CameraState
from .entries import clip, printable
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
from .events import Event, EventDeadLetter, EventType, IdentitySource
from .frames import SCHEMA_VERSION, Frame, FrameLimits, StreamFields, jpeg_size
from .gallery import GalleryExport, Identity
from .results import CachedRecognition, DeadLetter, Face, FaceQuality, Result, UnnamedReason
from .solo import SoloAttempt
from .urls import redact, redact_event, without_userinfo
from .workers import Heartbeat

__all__ = [
    "SCHEMA_VERSION",
    "CachedRecognition",
    "CameraHealth",
    "CameraState",
    "DeadLetter",
    "Event",
    "EventDeadLetter",
    "EventType",
    "Face",
    "FaceQuality",
    "FacestreamError",
    "Frame",
    "FrameLimits",
    "GalleryError",
    "GalleryExport",
    "Heartbeat",
    "Identity",
    "IdentitySource",
    "InvalidFrame",
    "InvalidGroup",
    "InvalidMessage",
    "ModelError",
    "RedisServerError",
    "Result",
    "SoloAttempt",
    "SourceError",
    "StreamFields",
    "UnnamedReason",
    "clip",
    "entries",
    "jpeg_size",
    "keys",
    "printable",
    "redact",
    "redact_event",
    "without_userinfo",
]
