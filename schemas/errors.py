"""The facestream exception hierarchy: every error facestream raises on purpose derives from
`FacestreamError`, rooted here so every package can share it. The whole tree (classes marked
with a module live there, next to the code that raises them):

    FacestreamError
    ├── InvalidMessage         a stream entry that breaks the wire contract (reason says how)
    │   └── InvalidFrame       ... a frame entry: bad field, wrong version, over the limits
    ├── InvalidGroup           a camera-group name that breaks the key rules (also a ValueError)
    ├── ModelError             a model file missing, corrupt or unusable (recognizer)
    ├── GalleryError           an enrolment refused or a gallery made by another model
    ├── SourceError            a camera or file that cannot be opened or read (ingest)
    ├── RedisServerError       the embedded redis-server could not be found or started
    ├── ConfigError            facestream.config: invalid settings, each bad field named
    │   │                      (also a ValueError); a port the page cannot listen on
    │   ├── UnmappedGroup      facestream.topology: a group no configured node holds
    │   └── AclError           facestream.acl: no ACL with the asked-for guarantees can be made
    ├── BridgeError            facestream.bridges.settings: a bridge cannot start as configured
    ├── RecognitionTimeout     facestream.client: no result for a submitted image in time
    │                          (also a TimeoutError)
    ├── NotRetryable           facestream.web.admin: a dead letter gone, or its frame trimmed
    ├── InvalidRequest         facestream.web.admin: a request naming what cannot exist
    │                          (also a ValueError)
    ├── BodyTooLarge           facestream.web.uploads: an upload past its cap while streaming
    └── Stopped                facestream.ingest.outages: a stop asked for while Redis was away

Nothing here is transient: retrying it without changing something is pointless. What a Redis
error means (transient, unreachable, refused, a group's fault) is decided once, in
`facestream.redis_errors`; the CLI maps both trees to its exit codes in one place
(`facestream.cli.main`: 2 for these, 3 unreachable or "not now", 4 refused).
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
