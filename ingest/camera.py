"""Camera agents: read each camera continuously, publish its newest frame at a fixed rate.

Each camera has one reader thread (opens, reads, reconnects with capped, jittered back-off)
and one publisher thread (every 1/fps: ask for the next frame, encode, XADD). The reader
demuxes every frame but converts (retrieves) only the one the publisher asked for; the others
are counted as dropped. Nothing queues up, so a slow Redis or slow workers cost frames, never
memory. The loop of `run_cameras` supervises both: it is the watchdog, and it restarts a
thread that died, so neither job depends on a thread that can die.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff

from facestream.outage import Outage
from facestream.redis_errors import REDIS_ERRORS, is_transient
from facestream.replication import ReplicaWait
from facestream.schemas import (
    CameraHealth,
    CameraState,
    FrameLimits,
    InvalidFrame,
    SourceError,
    keys,
)
from facestream.schemas.urls import redact

from .capture import FrameSource, Picture, open_source, set_transports
from .metrics import camera_counter
from .outages import single_shot
from .publisher import FramePublisher
from .settings import CameraSettings
from .sources import EncodedFrame, camera_jpeg, encode_jpeg, fit_side

__all__ = ["CameraAgent", "run_cameras"]

_SUPERVISE_EVERY_S = 0.25
_HEALTH_EVERY_S = 2.0
_HEALTH_TTL_S = 15

Role = Literal["read", "publish"]
_Outcome = Literal["sent", "redis-error", "rejected", "shed"]


class CameraAgent:
    """One camera: a reader and a rate-limited publisher it hands the frames asked for."""

    def __init__(
        self,
        camera: CameraSettings,
        client: redis.Redis,
        limits: FrameLimits,
        maxlen: int,
        stop: threading.Event,
        replica_wait: ReplicaWait | None = None,
    ) -> None:
        self.camera = camera
        self.stop = stop
        self.limits = limits
        self.publisher = FramePublisher(
            client, camera.group, camera.id, maxlen, limits, replica_wait=replica_wait
        )
        self.health = CameraHealth(
            camera=camera.id, group=camera.group, source=redact(camera.substream or camera.source)
        )
        self.log = structlog.get_logger("camera").bind(camera=camera.id, group=camera.group)
        self._outage = Outage(self.log)
        self._lock = threading.Lock()
        self._handed = threading.Condition(self._lock)
        self._wanted = False  # the publisher waits for the next frame grabbed
        self._latest: Picture | None = None
        self._latest_ms = 0
        self._last_frame_at = time.monotonic()
        self._reopen = threading.Event()  # the watchdog asks the reader for a fresh connection
        self._threads: dict[Role, threading.Thread] = {}
        self._deaths: dict[Role, str] = {}

    def start(self) -> None:
        self.supervise()

    def supervise(self) -> None:
        """The watchdog, and a restart for a thread that died (reported, never silent)."""
        if self.stop.is_set():
            return
        self._watchdog()
        self._keep_alive("read", self._read_loop)
        self._keep_alive("publish", self._publish_loop)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._set_state("stopped")

    def _keep_alive(self, role: Role, loop: Callable[[], None]) -> None:
        thread = self._threads.get(role)
        if thread is not None:
            if thread.is_alive():
                return
            camera_counter("restarts", self.camera.id).inc()
            self._record_error(f"{role} thread died ({self._deaths.pop(role, '?')}), restarted")
        thread = threading.Thread(
            target=self._guarded,
            args=(role, loop),
            name=f"{role}:{self.camera.id}",
            daemon=True,  # a read stuck in the backend must not keep the process alive
        )
        self._threads[role] = thread
        thread.start()

    def _guarded(self, role: Role, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as exc:  # any bug: the supervisor restarts the thread and says so
            self._deaths[role] = f"{type(exc).__name__}: {exc}"
            self.log.exception("camera thread died", thread=role)

    # -- reading ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = ExponentialWithJitterBackoff(
            base=self.camera.backoff_base_s, cap=self.camera.backoff_cap_s
        )
        failures = 0
        while not self.stop.is_set():
            self._set_state("connecting")
            try:
                source = open_source(self.camera)
            except SourceError as exc:
                self._record_error(str(exc))
            else:
                opened_at = time.monotonic()
                self._stream(source)
                # A source that flaps (one good frame, then gone) keeps backing off; only one
                # that stayed up for `stable_s` starts the back-off over.
                if time.monotonic() - opened_at >= self.camera.stable_s:
                    failures = 0
            failures += 1
            if self.stop.is_set():
                return
            self._reconnect_after(backoff.compute(failures), failures)

    def _stream(self, source: FrameSource) -> None:
        with self._lock:
            self._last_frame_at = time.monotonic()
            self._reopen.clear()
        try:
            self._set_state("streaming")
            while not self.stop.is_set() and not self._reopen.is_set():
                source.grab()
                self._took(source)
        except SourceError as exc:
            self._record_error(f"{self.health.source}: {exc}")
        finally:
            source.close()

    def _reconnect_after(self, delay_s: float, failures: int) -> None:
        self._count("reconnects")
        self._set_state("backing-off")
        self.log.info("reconnecting", in_s=round(delay_s, 2), failures=failures)
        self.stop.wait(delay_s)

    def _took(self, source: FrameSource) -> None:
        """Hand the frame just grabbed to the publisher if it asked for one, else skip it (the
        fps limit) before its colour conversion: a third of what reading a 1080p H.264 frame
        costs (docs/performance.md)."""
        with self._lock:
            self._last_frame_at = time.monotonic()
            self._count("frames_in")
            if not self._wanted:
                self._count("dropped")
                self.health.skipped += 1
                return
        picture = source.retrieve()  # outside the lock: the publisher may be encoding
        with self._lock:
            self._latest, self._latest_ms, self._wanted = picture, int(time.time() * 1000), False
            self._handed.notify()

    def _watchdog(self) -> None:
        """A source that stopped delivering is reopened by its own reader: once its read
        returns (bounded by read_timeout_s), never by stacking a second reader on it."""
        stalled_s = time.monotonic() - self._last_frame_at
        if self.health.state != "streaming" or stalled_s <= self.camera.stall_s:
            return
        if not self._reopen.is_set():
            self._reopen.set()
            self._record_error(f"stalled: no frame for {stalled_s:.0f}s, reconnecting")

    # -- publishing -------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        interval = 1.0 / self.camera.fps
        redis_backoff = ExponentialWithJitterBackoff(base=0.2, cap=self.camera.backoff_cap_s)
        redis_failures = 0
        next_at = time.monotonic()
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + interval, time.monotonic())
            with self._lock:
                # Ask for the next frame and wait for it up to one interval. Unanswered, the
                # request stands: a slower source's next frame is kept for the next turn.
                self._wanted = self._latest is None
                self._handed.wait_for(lambda: self._latest is not None, timeout=interval)
                picture, captured_ms, self._latest = self._latest, self._latest_ms, None
            if picture is None:
                continue
            outcome = self._publish(picture, captured_ms)
            if outcome == "redis-error":
                # Keep the camera open; newer frames follow after the pause.
                redis_failures += 1
                next_at = time.monotonic() + redis_backoff.compute(redis_failures)
            elif outcome == "sent":
                redis_failures = 0
                self._outage.recovered()

    def _publish(self, picture: Picture, captured_ms: int) -> _Outcome:
        """Encode and send one frame; any failure costs this frame only, counted and said."""
        try:
            if self._workers_behind():
                camera_counter("shed", self.camera.id).inc()
                self.health.shed += 1
                self._frame_lost(
                    f"workers are behind (over {self.camera.max_backlog} frames of this "
                    "camera unread): dropping frames until they catch up"
                )
                return "shed"
            self.publisher.publish(self._encoded(picture), captured_ms)
        except REDIS_ERRORS as exc:
            self.health.redis_errors += 1
            if is_transient(exc):  # away, or "not now" (LOADING, CLUSTERDOWN, OOM...)
                self._count("dropped")
                self._record_error(f"redis unavailable: {exc}", logged=False)
                self._outage.failed(exc)  # logged seldom, and once when it is over
            else:
                # The server refused (the key holds another type, ACL, password): someone has to
                # fix it; keep trying at the back-off pace and keep saying so.
                self._frame_lost(f"redis refused the frame: {exc}")
            return "redis-error"
        except (InvalidFrame, SourceError) as exc:  # over the byte limit, or not encodable
            camera_counter("rejected", self.camera.id).inc()
            self._frame_lost(f"frame rejected: {exc}")
            return "rejected"
        self._count("frames_out")
        return "sent"

    def _workers_behind(self) -> bool:
        """Whether the workers have not yet taken `max_backlog` of our published frames.

        Dropping here, counted, is what keeps MAXLEN from trimming frames nobody read, which
        would be lost without a trace; the newest frame is what a live camera wants anyway.
        """
        limit = self.camera.max_backlog
        # No round trip while the frames sent since the last check cannot be over the limit.
        return limit > 0 and self.publisher.unconfirmed > limit and self.publisher.backlog() > limit

    def _encoded(self, picture: Picture) -> EncodedFrame:
        """The camera's JPEG as it is where it fits; else pixels scaled to the camera's
        max_side and the pixel limit, then JPEG-encoded."""
        quality, max_side = self.camera.jpeg_quality, self.camera.max_side
        if isinstance(picture, bytes):
            return camera_jpeg(picture, quality, max_side, self.limits)
        height, width = picture.shape[:2]
        side = fit_side(width, height, max_side, self.limits.max_pixels)
        return EncodedFrame(*encode_jpeg(picture, quality, side))

    def _frame_lost(self, message: str) -> None:
        self._count("dropped")
        self._record_error(message)

    # -- health -----------------------------------------------------------------------------

    def _count(self, kind: Literal["frames_in", "frames_out", "dropped", "reconnects"]) -> None:
        """One more of `kind`, in the health report and in Prometheus alike."""
        setattr(self.health, kind, getattr(self.health, kind) + 1)
        camera_counter(kind, self.camera.id).inc()

    def _set_state(self, state: CameraState) -> None:
        if state != self.health.state:
            self.log.info("camera state", state=state, previous=self.health.state)
            self.health.state = state

    def _record_error(self, message: str, logged: bool = True) -> None:
        # The one way into the log and the health record: an error may quote the source URL.
        message = redact(message)
        # One log line per change: a refused XADD at 5 fps would otherwise flood the log.
        # (`logged` False: an outage, which `Outage` says instead.)
        if logged and message != self.health.last_error:
            self.log.warning("camera error", error=message)
        self.health.last_error = message
        self.health.last_error_at = int(time.time() * 1000)


def run_cameras(
    cameras: Sequence[CameraSettings],
    client_for: Callable[[str], redis.Redis],
    limits: FrameLimits,
    maxlen: int,
    stop: threading.Event,
    on_tick: Callable[[list[CameraHealth]], None] | None = None,
    replica_wait: ReplicaWait | None = None,
) -> None:
    """Run one agent per camera until `stop`, supervising them; report health every 2 s.

    `client_for(group)` is the client of the node holding that group: each camera's frames and
    health go there. `on_tick` gets every camera's health after each supervision round
    (liveness, readiness).
    """
    set_transports(cameras)
    clients = {camera.group: client_for(camera.group) for camera in cameras}
    agents = [CameraAgent(c, clients[c.group], limits, maxlen, stop, replica_wait) for c in cameras]
    for agent in agents:
        agent.start()
    log = structlog.get_logger("camera")
    # A report is soon stale: never hold the supervisor for it. One reporter per node.
    reporters: dict[int, redis.Redis] = {}
    for client in clients.values():
        reporters.setdefault(id(client), single_shot(client))
    previous = {agent.camera.id: (0, 0) for agent in agents}
    last = time.monotonic()
    while not stop.wait(_SUPERVISE_EVERY_S):
        for agent in agents:
            agent.supervise()
        if on_tick is not None:
            on_tick([agent.health for agent in agents])
        now = time.monotonic()
        if now - last < _HEALTH_EVERY_S:
            continue
        elapsed, last = now - last, now
        pipes = {key: reporter.pipeline(transaction=False) for key, reporter in reporters.items()}
        for agent in agents:
            pipe = pipes[id(clients[agent.camera.group])]
            health = agent.health
            before_in, before_out = previous[health.camera]
            health.fps_in = round((health.frames_in - before_in) / elapsed, 2)
            health.fps_out = round((health.frames_out - before_out) / elapsed, 2)
            previous[health.camera] = (health.frames_in, health.frames_out)
            health.updated_at = int(time.time() * 1000)
            pipe.set(keys.camera_health(health.camera), health.model_dump_json(), ex=_HEALTH_TTL_S)
        for pipe in pipes.values():
            try:
                pipe.execute()
            except REDIS_ERRORS as exc:  # down, or refused: the cameras carry on regardless
                log.warning("cannot report camera health", error=str(exc))
    for agent in agents:
        agent.join(timeout_s=2.0 / max(len(agents), 1) + 0.5)
    log.info("cameras stopped", cameras=[a.camera.id for a in agents])
