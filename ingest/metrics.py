"""Prometheus counters of the camera agents (served by `facestream camera --metrics-port`)."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter

__all__ = ["camera_counter"]

_COUNTERS = {
    "frames_in": Counter(
        "facestream_camera_frames_in_total", "Frames read from the source.", ["camera"]
    ),
    "frames_out": Counter(
        "facestream_camera_frames_out_total", "Frames published to Redis.", ["camera"]
    ),
    "dropped": Counter(
        "facestream_camera_frames_dropped_total",
        "Frames read but not published (a newer one replaced it, Redis was down or refused, "
        "the frame was rejected, or the workers were behind).",
        ["camera"],
    ),
    "reconnects": Counter(
        "facestream_camera_reconnects_total", "Times the source was reopened.", ["camera"]
    ),
    "rejected": Counter(
        "facestream_camera_frames_rejected_total",
        "Frames that could not be sent at all (over the byte limit, not encodable).",
        ["camera"],
    ),
    "shed": Counter(
        "facestream_camera_frames_shed_total",
        "Frames dropped because the workers had not taken max_backlog earlier ones (overload).",
        ["camera"],
    ),
    "restarts": Counter(
        "facestream_camera_thread_restarts_total",
        "Reader or publisher threads that died and were restarted (a bug: see the log).",
        ["camera"],
    ),
}


@cache
def camera_counter(kind: str, camera: str) -> Counter:
    return _COUNTERS[kind].labels(camera)
