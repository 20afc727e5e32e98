"""The facestream exception hierarchy, rooted here so every package can share it.

    FacestreamError
    ├── InvalidMessage        a stream entry that breaks the wire contract (reason says how)
    │   └── InvalidFrame      ... a frame entry: bad field, wrong version, over the limits
    ├── InvalidGroup          a camera-group name that breaks the key rules (also a ValueError)
    ├── ModelError            a model file missing, corrupt or unusable (recognizer)
    ├── GalleryError          an enrolment refused or a gallery made by another model
    ├── SourceError           a camera or file that cannot be opened or read (ingest)
    └── RedisServerError      the embedded redis-server could not be found or started

Nothing here is transient: retrying it without changing something is pointless. Which Redis
errors are transient is decided in `recognizer/commit.py` (`is_transient`).
"""

from __future__ import annotations

__all__ = [
    "FacestreamError",
    "GalleryError",
    "InvalidFrame",
    "InvalidGroup",
    "InvalidMessage",
    "ModelError",
    "RedisServerError",
    "SourceError",
]


class FacestreamError(Exception):
    """Root of every error facestream raises on purpose."""


class InvalidMessage(FacestreamError, ValueError):
    """A stream entry that does not follow the wire contract; `reason` is short and loggable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidFrame(InvalidMessage):
    """A frame entry that cannot be recognised: bad fields, unsupported version, too big."""


class InvalidGroup(FacestreamError, ValueError):
    """A camera-group name that cannot be part of a key (it would escape its hash tag)."""


class ModelError(FacestreamError):
    """A model file is missing, corrupt or cannot be run."""


class GalleryError(FacestreamError):
    """An enrolment was refused, or the gallery does not fit the running model."""


class SourceError(FacestreamError):
    """A video source (file, folder, camera) cannot be opened or read."""


class RedisServerError(FacestreamError):
    """The embedded redis-server could not be found, started or stopped."""
