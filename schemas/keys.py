"""Redis key layout: every key of a camera group shares the `{group}` hash tag (one slot)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Literal

from .errors import InvalidGroup

__all__ = [
    "EVERY_KEY",
    "GALLERY_IDENTITIES",
    "GALLERY_KEYS",
    "GALLERY_VERSION",
    "GROUP_NAME_PATTERN",
    "RECOGNIZERS",
    "VISITOR_EMBEDDINGS",
    "VISITOR_SEEN",
    "cache",
    "camera_health",
    "dead",
    "events",
    "events_dead",
    "every_group",
    "frames",
    "group_of",
    "groups_in",
    "results",
    "seen",
    "snapshot",
    "solo",
    "track",
    "validate_group",
    "worker_heartbeat",
]

GROUP_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_GROUP_RE = re.compile(GROUP_NAME_PATTERN)
_KEY_RE = re.compile(r"^fs:\{([A-Za-z0-9_.-]{1,64})\}:")

#: Consumer group of the recogniser workers on every frames stream.
RECOGNIZERS = "recognizers"

# The gallery's keys share their own hash tag so an enrolment (identity + version bump) is one
# MULTI even on Redis Cluster.
GALLERY_IDENTITIES = "fs:{gallery}:identities"
GALLERY_VERSION = "fs:{gallery}:version"
#: Every gallery key (SCAN MATCH pattern; also the prefix of each: drop the `*`).
GALLERY_KEYS = "fs:{gallery}:*"
#: Every facestream key (an ACL key pattern).
EVERY_KEY = "fs:*"

#: The kinds of a camera group's keys that `every_group` can match.
GroupKeyKind = Literal["frames", "results", "dead", "events", "cache", "track"]
_PER_ITEM = ("cache", "track")  # one key per image / camera, below the kind

# Opt-in pseudonymous visitors: embedding per visitor id, and when each was last seen.
VISITOR_EMBEDDINGS = "fs:{visitors}:embeddings"
VISITOR_SEEN = "fs:{visitors}:seen"


def validate_group(group: str) -> str:
    """Return `group` if it is a valid camera-group name, else raise InvalidGroup saying why."""
    if not _GROUP_RE.fullmatch(group):  # match() would let a trailing newline through
        raise InvalidGroup(
            f"invalid camera group {group!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    if group in (".", ".."):  # a URL path segment of its own: /api/dead/../purge
        raise InvalidGroup(f"invalid camera group {group!r}: not only dots")
    return group


def frames(group: str) -> str:
    """Stream of encoded frames of one camera group."""
    return f"fs:{{{validate_group(group)}}}:frames"


def results(group: str) -> str:
    """Stream of recognition results of one camera group."""
    return f"fs:{{{validate_group(group)}}}:results"


def dead(group: str) -> str:
    """Dead-letter stream: frames that could not be processed, with the reason."""
    return f"fs:{{{validate_group(group)}}}:dead"


def events(group: str) -> str:
    """Stream of visit events (tracks appearing, identified, leaving) of one camera group."""
    return f"fs:{{{validate_group(group)}}}:events"


def events_dead(group: str) -> str:
    """Events a bridge (MQTT, webhook) could not deliver, with the reason."""
    return f"fs:{{{validate_group(group)}}}:events:dead"


def track(group: str, camera: str) -> str:
    """Face-track state of one camera (updated by whichever worker serves its next frame)."""
    return f"fs:{{{validate_group(group)}}}:track:{camera}"


def solo(group: str) -> str:
    """Hash of the group's entries being tried alone after a crash (entry id -> SoloAttempt)."""
    return f"fs:{{{validate_group(group)}}}:solo"


def cache(group: str, image_hash: str) -> str:
    """Cached recognition of one image (by content hash), scoped to the group's slot."""
    return f"fs:{{{validate_group(group)}}}:cache:{image_hash}"


def snapshot(group: str, track: str) -> str:
    """The best face crop (JPEG) of one track, kept with a TTL and named in its events."""
    return f"fs:{{{validate_group(group)}}}:snapshot:{track}"


def seen(identity: str) -> str:
    """Set NX with a TTL when an identity is seen anywhere: one `seen` event per cooldown.

    Its own `{seen}` tag, so on a cluster all of them live in one slot, away from the groups'.
    """
    return f"fs:{{seen}}:{identity}"


def camera_health(camera: str) -> str:
    """A camera agent's latest health report for one camera (expires if the agent dies)."""
    return f"fs:cameras:{camera}"


def worker_heartbeat(consumer: str) -> str:
    """Short-lived key a running worker refreshes with its stats (for `status`, the demo)."""
    return f"fs:workers:{consumer}"


def every_group(kind: GroupKeyKind) -> str:
    """SCAN MATCH pattern of one kind of key in every group (`fs:{*}:frames`, `fs:{*}:cache:*`)."""
    return f"fs:{{*}}:{kind}" + (":*" if kind in _PER_ITEM else "")


def group_of(key: str | bytes) -> str:
    """The camera group a facestream key belongs to, or InvalidGroup."""
    try:
        text = key.decode() if isinstance(key, bytes) else key
    except UnicodeDecodeError:
        raise InvalidGroup(f"{key[:100]!r} is not a facestream group key") from None
    match = _KEY_RE.match(text)
    if match is None:
        raise InvalidGroup(f"{text[:100]!r} is not a facestream group key")
    return validate_group(match.group(1))


def groups_in(
    names: Iterable[str | bytes], skipped: Callable[[str | bytes], None] | None = None
) -> set[str]:
    """The camera groups of keys found by a SCAN: how every reader discovers groups.

    A key that only looks like a group's (somebody else's, or a hostile name) is never a group
    of ours and never fatal: it is handed to `skipped`, if given, and left out.
    """
    found = set()
    for name in names:
        try:
            found.add(group_of(name))
        except InvalidGroup:
            if skipped is not None:
                skipped(name)
    return found
