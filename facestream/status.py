"""What `facestream status` reports: each group's streams and each camera's health, from Redis."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis

from facestream.recognizer import Gallery
from facestream.schemas import CameraHealth, keys

__all__ = ["GroupStatus", "StatusReport", "collect_status", "known_groups"]


@dataclass(frozen=True)
class GroupStatus:
    """One camera group's streams: queued frames, work in flight, results, dead letters."""

    group: str
    frames: int
    pending: int
    lag: int | None  # Redis 7+: entries not yet delivered to any worker; None before 7
    consumers: int
    results: int
    dead: int


@dataclass(frozen=True)
class StatusReport:
    groups: list[GroupStatus]
    gallery_version: int
    cameras: list[CameraHealth]

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [asdict(group) for group in self.groups],
            "gallery_version": self.gallery_version,
            "cameras": [camera.model_dump(mode="json") for camera in self.cameras],
        }


def known_groups(client: redis.Redis) -> list[str]:
    """Groups that have a frames or a results stream on this node, sorted."""
    found = {
        keys.group_of(key)
        for pattern in ("fs:{*}:frames", "fs:{*}:results")
        for key in client.scan_iter(match=pattern, _type="stream")
    }
    return sorted(found)


def _group_status(client: redis.Redis, group: str) -> GroupStatus:
    stream = keys.frames(group)
    groups_info = client.xinfo_groups(stream) if client.exists(stream) else []
    recognizers = next(
        (g for g in groups_info if g["name"].decode() == keys.RECOGNIZERS), {"pending": 0}
    )
    return GroupStatus(
        group=group,
        frames=client.xlen(stream),
        pending=int(recognizers.get("pending", 0)),
        lag=recognizers.get("lag"),
        consumers=int(recognizers.get("consumers", 0)),
        results=client.xlen(keys.results(group)),
        dead=client.xlen(keys.dead(group)),
    )


def collect_status(client: redis.Redis, groups: list[str] | None = None) -> StatusReport:
    """Every group (or `groups`), the gallery version and every camera's last health report."""
    reports = sorted(client.scan_iter(match=keys.camera_health("*")))
    lookup = client.pipeline(transaction=False)  # not MGET: the keys span slots on a cluster
    for key in reports:
        lookup.get(key)
    cameras = [
        CameraHealth.model_validate_json(raw)
        for raw in (lookup.execute() if reports else [])
        if raw is not None
    ]
    return StatusReport(
        groups=[_group_status(client, group) for group in groups or known_groups(client)],
        gallery_version=Gallery(client).version(),
        cameras=cameras,
    )
