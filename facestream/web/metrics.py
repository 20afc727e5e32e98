"""Cluster-wide gauges for Prometheus, from the web process's latest status sample.

Workers and camera agents export what they do (counters of their own work); the state of the
streams, the gallery and the cameras belongs to no one of them, so the web process exports it.
Values come from the last `collect_status` sample (every `web.sample_s`), so a scrape costs
Redis nothing and many scrapers cannot load it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from facestream.skipped import SKIPPED

from .monitor import Monitor
from .throttle import Throttle

__all__ = ["METRICS", "AuthCollector", "StatusCollector", "render_metrics"]

# name → help; the group gauges carry a `group` label, the camera gauges `camera` and `group`.
METRICS = {
    "facestream_stream_length": "Entries in a group's frames stream (XLEN; capped by MAXLEN ~).",
    "facestream_stream_pending": "Frames delivered to a worker and not yet acknowledged.",
    "facestream_stream_lag": "Frames not yet delivered to any worker (Redis 7+; absent before).",
    "facestream_stream_consumers": "Workers (consumers) in the group's `recognizers` group.",
    "facestream_results_length": "Entries in a group's results stream (XLEN).",
    "facestream_dead_letters": "Entries in a group's dead-letter stream (XLEN).",
    "facestream_gallery_version": "Gallery version counter (bumped by every change).",
    "facestream_gallery_identities": "Enrolled identities.",
    "facestream_gallery_identities_unusable": "Enrolled identities workers skip (another "
    "model's, wrong dimensions, NaN, not unit length; `facestream status` names them).",
    "facestream_stream_fault": "1 while a group's stream is emptied or at its last possible "
    "id (XADD refused): `fault` says which, docs/security.md the repair.",
    "facestream_camera_up": "1 while a camera's agent reports it streaming, else 0.",
    "facestream_camera_fps_in": "Frames per second a camera's agent reads from the source.",
    "facestream_camera_fps_out": "Frames per second a camera's agent publishes.",
    "facestream_workers_up": "Workers whose heartbeat is fresh (it expires 15 s after one stops).",
    "facestream_worker_quarantined_groups": "Groups a worker has quarantined (its keys refuse it).",
    "facestream_status_group_quarantined": "1 while some worker has quarantined the group, else 0.",
    "facestream_status_age_seconds": "Seconds since the web process last sampled Redis.",
    "facestream_status_up": "1 when the last status sample succeeded, 0 when Redis failed it.",
    "facestream_web_auth_failures": "Failed logins and bearer tokens, by kind (login, bearer).",
    "facestream_web_auth_throttled": "Attempts refused unchecked (429) while their client "
    "waited out its failures, by kind.",
}

_GROUP_FIELDS = {
    "facestream_stream_length": "frames",
    "facestream_stream_pending": "pending",
    "facestream_stream_lag": "lag",
    "facestream_stream_consumers": "consumers",
    "facestream_results_length": "results",
    "facestream_dead_letters": "dead",
}


class StatusCollector(Collector):
    """Turns the monitor's latest StatusReport into gauges at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        up = GaugeMetricFamily("facestream_status_up", METRICS["facestream_status_up"])
        up.add_metric([], 0.0 if monitor.error or monitor.report is None else 1.0)
        yield up
        report = monitor.report
        if report is None:
            return
        age = GaugeMetricFamily(
            "facestream_status_age_seconds", METRICS["facestream_status_age_seconds"]
        )
        age.add_metric([], time.monotonic() - monitor.sampled_at)
        yield age
        for name, field in _GROUP_FIELDS.items():
            family = GaugeMetricFamily(name, METRICS[name], labels=["group"])
            for group in report.groups:
                value = getattr(group, field)
                if value is not None:
                    family.add_metric([group.group], float(value))
            yield family
        version = GaugeMetricFamily(
            "facestream_gallery_version", METRICS["facestream_gallery_version"]
        )
        version.add_metric([], float(report.gallery_version))
        yield version
        size = GaugeMetricFamily(
            "facestream_gallery_identities", METRICS["facestream_gallery_identities"]
        )
        size.add_metric([], float(len(monitor.gallery[1])))
        yield size
        unusable = GaugeMetricFamily(
            "facestream_gallery_identities_unusable",
            METRICS["facestream_gallery_identities_unusable"],
        )
        unusable.add_metric([], float(len(monitor.gallery_unusable)))
        yield unusable
        faults = GaugeMetricFamily(
            "facestream_stream_fault",
            METRICS["facestream_stream_fault"],
            labels=["group", "stream", "fault"],
        )
        for group in report.groups:
            for fault in group.faults:
                faults.add_metric([group.group, fault.stream, fault.kind], 1.0)
        yield faults
        cameras = {
            name: GaugeMetricFamily(name, METRICS[name], labels=["camera", "group"])
            for name in (
                "facestream_camera_up",
                "facestream_camera_fps_in",
                "facestream_camera_fps_out",
            )
        }
        for health in report.cameras:
            labels = [health.camera, health.group]
            streaming = 1.0 if health.state == "streaming" else 0.0
            cameras["facestream_camera_up"].add_metric(labels, streaming)
            cameras["facestream_camera_fps_in"].add_metric(labels, health.fps_in)
            cameras["facestream_camera_fps_out"].add_metric(labels, health.fps_out)
        yield from cameras.values()
        workers = GaugeMetricFamily("facestream_workers_up", METRICS["facestream_workers_up"])
        workers.add_metric([], float(len(report.workers)))
        yield workers
        per_worker = GaugeMetricFamily(
            "facestream_worker_quarantined_groups",
            METRICS["facestream_worker_quarantined_groups"],
            labels=["consumer"],
        )
        for worker in report.workers:
            per_worker.add_metric([worker.consumer], float(len(worker.quarantined)))
        yield per_worker
        quarantined = GaugeMetricFamily(
            "facestream_status_group_quarantined",
            METRICS["facestream_status_group_quarantined"],
            labels=["group"],
        )
        for group in report.groups:
            quarantined.add_metric([group.group], float(group.group in report.quarantined))
        yield quarantined


class AuthCollector(Collector):
    """The throttle's counts of failed and refused authentication attempts."""

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle

    def collect(self) -> Iterator[Metric]:
        for name, counts in (
            ("facestream_web_auth_failures", self.throttle.failures),
            ("facestream_web_auth_throttled", self.throttle.throttled),
        ):
            family = CounterMetricFamily(name, METRICS[name], labels=["kind"])
            for kind in ("login", "bearer"):
                family.add_metric([kind], float(counts[kind]))
            yield family


def render_metrics(monitor: Monitor, throttle: Throttle | None = None) -> bytes:
    """The Prometheus text exposition of the status gauges and, given the page's throttle,
    its authentication counters (own registry: no process noise)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(monitor))
    registry.register(SKIPPED)  # what this process's readers skipped (feed, visits, dead…)
    if throttle is not None:
        registry.register(AuthCollector(throttle))
    return generate_latest(registry)
