"""Prometheus metrics of the recogniser (served by `facestream worker --metrics-port`)."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "COMMITS_LOST",
    "GALLERY_SKIPPED",
    "RESTARTS",
    "faces_counter",
    "frames_counter",
    "quarantine_gauge",
    "redis_errors_counter",
    "solo_gauge",
    "stage_histogram",
]

FRAMES = Counter(
    "facestream_frames_total",
    "Frames finished by this worker, by outcome (recognised, cached, dead).",
    ["group", "outcome"],
)
FACES = Counter(
    "facestream_faces_total", "Faces published, by whether they were identified.", ["identified"]
)
COMMITS_LOST = Counter(
    "facestream_commits_lost_total",
    "Results not published because another worker had claimed the frame (XACK returned 0).",
)
REDIS_ERRORS = Counter(
    "facestream_redis_errors_total",
    "Redis errors the worker met and survived, by error class (ConnectionError, "
    "OutOfMemoryError, NoPermissionError...).",
    ["kind"],
)
QUARANTINED = Gauge(
    "facestream_group_quarantined",
    "1 while a group is not served because its keys refuse our commands (NOPERM, WRONGTYPE).",
    ["group"],
)
SOLO = Gauge(
    "facestream_solo_entries",
    "Entries of a group on record as tried alone after a crash (fs:{G}:solo), as this worker "
    "last counted them: while above 0, redelivered entries are being retried one at a time.",
    ["group"],
)
GALLERY_SKIPPED = Gauge(
    "facestream_gallery_identities_skipped",
    "Gallery identities the worker's last gallery load skipped as unusable (another model's, "
    "wrong dimensions, NaN, not unit length); `facestream status` names them.",
)
RESTARTS = Gauge(
    "facestream_worker_restarts",
    "How often the supervisor (--concurrency N) restarted this worker slot after its process "
    "died; set by the process that replaced it.",
)
STAGE_SECONDS = Histogram(
    "facestream_stage_seconds",
    "Time per frame in each stage.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


# Resolving label values costs a dict lookup and a lock per call; the hot path reuses children.
@cache
def frames_counter(group: str, outcome: str) -> Counter:
    return FRAMES.labels(group, outcome)


@cache
def faces_counter(identified: bool) -> Counter:
    return FACES.labels("true" if identified else "false")


@cache
def stage_histogram(stage: str) -> Histogram:
    return STAGE_SECONDS.labels(stage)


@cache
def redis_errors_counter(kind: str) -> Counter:
    return REDIS_ERRORS.labels(kind)


@cache
def quarantine_gauge(group: str) -> Gauge:
    return QUARANTINED.labels(group)


@cache
def solo_gauge(group: str) -> Gauge:
    return SOLO.labels(group)
