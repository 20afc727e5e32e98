"""Camera agents: read each camera continuously, publish its latest frame at a fixed rate.

Each camera has a reader thread (opens, reads, reconnects with capped, jittered back-off) and
a publisher thread (every 1/fps: take the newest frame, encode, XADD). Frames the publisher
never took are counted as dropped; nothing queues up, so a slow Redis or slow workers cost
frames, never memory. One stuck camera holds only its own threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import redis
import structlog
from numpy.typing import NDArray
from redis.backoff import ExponentialWithJitterBackoff

from facestream.schemas import CameraHealth, CameraState, FrameLimits, SourceError, keys

from .capture import open_source, redact, set_transports
from .metrics import camera_counter
from .publisher import FramePublisher
from .settings import CameraSettings
from .sources import EncodedFrame, encode_jpeg

__all__ = ["CameraAgent", "run_cameras"]

_HEALTH_EVERY_S = 2.0
_HEALTH_TTL_S = 15


class CameraAgent:
    """One camera: a supervised reader and a rate-limited publisher sharing the newest frame."""

    def __init__(
        self,
        camera: CameraSettings,
        client: redis.Redis,
        limits: FrameLimits,
        maxlen: int,
        stop: threading.Event,
    ) -> None:
        self.camera = camera
        self.stop = stop
        self.publisher = FramePublisher(client, camera.group, camera.id, maxlen, limits)
        self.health = CameraHealth(
            camera=camera.id, group=camera.group, source=redact(camera.source)
        )
        self.log = structlog.get_logger("camera").bind(camera=camera.id, group=camera.group)
        self._lock = threading.Lock()
        self._latest: NDArray[np.uint8] | None = None
        self._latest_ms = 0
        self._last_frame_at = time.monotonic()
        self._generation = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn_reader()
        publisher = threading.Thread(
            target=self._publish_loop, name=f"publish:{self.camera.id}", daemon=True
        )
        publisher.start()
        self._threads.append(publisher)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._set_state("stopped")

    # -- reading ----------------------------------------------------------------------------

    def _spawn_reader(self) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._last_frame_at = time.monotonic()
        reader = threading.Thread(
            target=self._read_loop,
            args=(generation,),
            name=f"read:{self.camera.id}:{generation}",
            daemon=True,  # a read stuck in the backend must not keep the process alive
        )
        reader.start()
        self._threads.append(reader)

    def _read_loop(self, generation: int) -> None:
        backoff = ExponentialWithJitterBackoff(
            base=self.camera.backoff_base_s, cap=self.camera.backoff_cap_s
        )
        failures = 0
        while not self.stop.is_set() and generation == self._generation:
            self._set_state("connecting")
            try:
                source = open_source(self.camera)
            except SourceError as exc:
                failures += 1
                self._record_error(str(exc))
            else:
                try:
                    self._set_state("streaming")
                    while not self.stop.is_set() and generation == self._generation:
                        image = source.read()
                        failures = 0
                        self._offer(image, generation)
                except SourceError as exc:
                    failures += 1
                    self._record_error(f"{self.health.source}: {exc}")
                finally:
                    source.close()
            if self.stop.is_set() or generation != self._generation:
                return
            self._reconnect_after(backoff.compute(max(failures, 1)))

    def _reconnect_after(self, delay_s: float) -> None:
        self._count("reconnects")
        self._set_state("backing-off")
        self.log.info("reconnecting", in_s=round(delay_s, 2), reconnects=self.health.reconnects)
        self.stop.wait(delay_s)

    def _offer(self, image: NDArray[np.uint8], generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # an abandoned reader (the watchdog replaced it)
            if self._latest is not None:
                self._count("dropped")
            self._latest = image
            self._latest_ms = int(time.time() * 1000)
            self._last_frame_at = time.monotonic()
            self._count("frames_in")

    # -- publishing -------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        interval = 1.0 / self.camera.fps
        redis_backoff = ExponentialWithJitterBackoff(base=0.2, cap=self.camera.backoff_cap_s)
        redis_failures = 0
        next_at = time.monotonic()
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + interval, time.monotonic())
            self._watchdog()
            with self._lock:
                image, captured_ms, self._latest = self._latest, self._latest_ms, None
            if image is None:
                continue
            jpeg, width, height = encode_jpeg(image, self.camera.jpeg_quality, self.camera.max_side)
            try:
                self.publisher.publish(EncodedFrame(jpeg, width, height), captured_ms)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Keep the camera open; this frame is lost, newer ones follow after the pause.
                redis_failures += 1
                self.health.redis_errors += 1
                self._count("dropped")
                self._record_error(f"redis unavailable: {exc}")
                next_at = time.monotonic() + redis_backoff.compute(redis_failures)
                continue
            redis_failures = 0
            self._count("frames_out")

    def _watchdog(self) -> None:
        stalled_s = time.monotonic() - self._last_frame_at
        if self.health.state == "streaming" and stalled_s > self.camera.stall_s:
            self._record_error(f"stalled: no frame for {stalled_s:.0f}s, reconnecting")
            self._count("reconnects")
            self._spawn_reader()

    # -- health -----------------------------------------------------------------------------

    def _count(self, kind: Literal["frames_in", "frames_out", "dropped", "reconnects"]) -> None:
        """One more of `kind`, in the health report and in Prometheus alike."""
        setattr(self.health, kind, getattr(self.health, kind) + 1)
        camera_counter(kind, self.camera.id).inc()

    def _set_state(self, state: CameraState) -> None:
        if state != self.health.state:
            self.log.info("camera state", state=state, previous=self.health.state)
            self.health.state = state

    def _record_error(self, message: str) -> None:
        self.health.last_error = message
        self.health.last_error_at = int(time.time() * 1000)
        self.log.warning("camera error", error=message)


def run_cameras(
    cameras: Sequence[CameraSettings],
    client: redis.Redis,
    limits: FrameLimits,
    maxlen: int,
    stop: threading.Event,
) -> None:
    """Run one agent per camera until `stop`; report health to Redis every couple of seconds."""
    set_transports(cameras)
    agents = [CameraAgent(camera, client, limits, maxlen, stop) for camera in cameras]
    for agent in agents:
        agent.start()
    log = structlog.get_logger("camera")
    previous = {agent.camera.id: (0, 0) for agent in agents}
    last = time.monotonic()
    while not stop.wait(_HEALTH_EVERY_S):
        now = time.monotonic()
        elapsed, last = now - last, now
        pipe = client.pipeline(transaction=False)
        for agent in agents:
            health = agent.health
            before_in, before_out = previous[health.camera]
            health.fps_in = round((health.frames_in - before_in) / elapsed, 2)
            health.fps_out = round((health.frames_out - before_out) / elapsed, 2)
            previous[health.camera] = (health.frames_in, health.frames_out)
            health.updated_at = int(time.time() * 1000)
            pipe.set(keys.camera_health(health.camera), health.model_dump_json(), ex=_HEALTH_TTL_S)
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("cannot report camera health", error=str(exc))
    for agent in agents:
        agent.join(timeout_s=2.0 / max(len(agents), 1) + 0.5)
    log.info("cameras stopped", cameras=[a.camera.id for a in agents])
