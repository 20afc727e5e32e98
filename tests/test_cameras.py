"""Camera agents against real sources: a GStreamer RTSP server, HTTP MJPEG, silent servers."""

from __future__ import annotations

import ctypes
import http.server
import itertools
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from structlog.testing import capture_logs

from facestream.config import Settings
from facestream.demo import fit_frame
from facestream.ingest import CameraSettings, EncodedFrame, FramePublisher, redact, run_cameras
from facestream.ingest.metrics import camera_counter
from facestream.ingest.sources import camera_jpeg
from facestream.recognizer import FaceEngine
from facestream.schemas import (
    CameraHealth,
    Frame,
    FrameLimits,
    InvalidFrame,
    Result,
    jpeg_size,
    keys,
)
from facestream.server import EmbeddedRedis, free_port

from .helpers import (
    FACES,
    IDENTITIES,
    drain,
    enrol,
    make_worker,
    require_system_dependency,
    wait_for,
)

SERVER = Path(__file__).parent / "servers" / "rtsp_server.py"
_GI_CHECK = 'import gi; gi.require_version("GstRtspServer", "1.0")'


def _rtsp_available() -> bool:
    found = subprocess.run(["/usr/bin/python3", "-c", _GI_CHECK], capture_output=True)
    return found.returncode == 0


class RtspServer:
    """GStreamer's RTSP server in its own process; stop() is a real outage."""

    def __init__(self, frames: Path) -> None:
        self.frames = frames
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "/usr/bin/python3",
                str(SERVER),
                "--port",
                str(self.port),
                "--frames",
                str(self.frames),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", line

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def rtsp_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames of 640x360: each test photo for 4 frames (0.4 s at the server's 10 fps)."""
    folder = tmp_path_factory.mktemp("rtsp-frames")
    index = 0
    for photo in sorted((FACES / "test").glob("*.jpg")):
        image = np.asarray(cv2.imread(str(photo)), np.uint8)
        for step in range(4):
            cv2.imwrite(
                str(folder / f"f{index:05d}.jpg"), fit_frame(image, (640, 360), 1 + 0.02 * step)
            )
            index += 1
    return folder


@pytest.fixture()
def rtsp(rtsp_frames: Path) -> Iterator[RtspServer]:
    require_system_dependency(
        _rtsp_available(), "GStreamer's RTSP server (scripts/install-system-deps.sh)"
    )
    server = RtspServer(rtsp_frames)
    server.start()
    yield server
    server.stop()


@contextmanager
def agents(cameras: list[CameraSettings], url: str, settings: Settings) -> Iterator[None]:
    """run_cameras in a thread, as `facestream camera` runs it, stopped on exit."""
    stop = threading.Event()
    client = redis.Redis.from_url(url, socket_timeout=2)
    runner = threading.Thread(
        target=run_cameras,
        args=(cameras, lambda _group: client, settings.limits, 10_000, stop),
        daemon=True,
    )
    runner.start()
    try:
        yield
    finally:
        stop.set()
        runner.join(10)
        assert not runner.is_alive(), "run_cameras did not stop"


def _health(client: redis.Redis, camera: str) -> CameraHealth | None:
    raw = client.get(keys.camera_health(camera))
    return CameraHealth.model_validate_json(raw) if raw else None  # type: ignore[arg-type]


def _last_error(client: redis.Redis, camera: str) -> str:
    health = _health(client, camera)
    return (health.last_error or "") if health else ""


def _frames(client: redis.Redis, group: str = "g1") -> list[Frame]:
    return [Frame.from_fields(f) for _, f in client.xrange(keys.frames(group))]


def _camera(source: str, camera: str = "c1", **options: object) -> CameraSettings:
    defaults: dict[str, object] = dict(
        fps=5, open_timeout_s=3, read_timeout_s=3, backoff_base_s=0.2, backoff_cap_s=1
    )
    return CameraSettings.model_validate(
        {"id": camera, "group": "g1", "source": source, **defaults, **options}
    )


def test_credentials_are_redacted() -> None:
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert redact("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_rtsp_camera_sends_latest_frames_and_people_are_recognised(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis,
    engine: FaceEngine, settings: Settings,
) -> None:  # fmt: skip
    with agents([_camera(rtsp.url)], redis_server.url, settings):
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 20, what="20 frames")
        wait_for(lambda: (h := _health(client, "c1")) and h.frames_out >= 20, what="health")
        health = _health(client, "c1")
    frames = _frames(client)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(a.ts < b.ts for a, b in itertools.pairwise(frames))
    # The server sends 10 fps and the agent publishes 5: the rest are dropped, not queued.
    assert health is not None and health.state == "streaming"
    assert health.frames_in > health.frames_out and health.dropped > 0
    assert health.skipped > 0 and health.shed == 0  # the fps limit, not load shedding
    assert camera_counter("frames_out", "c1")._value.get() >= health.frames_out

    enrol(engine, client)
    drain(make_worker(client, engine, settings), client, "g1", len(frames))
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results("g1"))]
    seen = {name for result in results for name in result.identities}
    assert seen == set(IDENTITIES)


def test_rtsp_outage_reconnects_by_itself(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    with agents([_camera(rtsp.url)], redis_server.url, settings):
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="first frames")
        rtsp.stop()
        wait_for(lambda: (h := _health(client, "c1")) and h.reconnects >= 1, what="reconnect")
        before = client.xlen(keys.frames("g1"))
        rtsp.start()
        wait_for(lambda: client.xlen(keys.frames("g1")) >= before + 5, what="frames again")
        health = _health(client, "c1")
    assert health is not None and health.reconnects >= 1
    assert health.last_error is not None and health.last_error_at is not None
    seqs = [f.seq for f in _frames(client)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_stalled_stream_trips_the_watchdog(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    # A long read timeout, so it is the watchdog (stall_s) that notices, not the backend.
    camera = _camera(rtsp.url, read_timeout_s=60, stall_s=1.5)
    with agents([camera], redis_server.url, settings):
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="first frames")
        assert rtsp.process is not None
        rtsp.process.send_signal(signal.SIGSTOP)  # connection open, nothing sent
        try:
            wait_for(lambda: _last_error(client, "c1").startswith("stalled"), what="the watchdog")
        finally:
            rtsp.process.send_signal(signal.SIGCONT)
        before = client.xlen(keys.frames("g1"))
        wait_for(lambda: client.xlen(keys.frames("g1")) >= before + 3, what="frames again")


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for connection in accepted:
            connection.close()
        listener.close()


def test_bad_sources_fail_clearly_and_do_not_disturb_a_good_one(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    with silent_server() as silent_port:
        cameras = [
            _camera(rtsp.url, "good"),
            _camera(f"rtsp://127.0.0.1:{free_port()}/cam", "wrong-port"),
            _camera(rtsp.url.replace("/cam", "/nope"), "wrong-path"),
            _camera("foo://bar", "garbage"),
            _camera(f"rtsp://127.0.0.1:{silent_port}/cam", "silent", open_timeout_s=1),
            _camera("/dev/video99", "no-device"),
        ]
        expected = {
            "wrong-port": "cannot connect to 127.0.0.1:",
            "wrong-path": "no such stream path (RTSP/1.0 404 Not Found)",
            "garbage": "foo://bar: unsupported URL scheme (use rtsp, http or https)",
            "silent": "server accepted the connection but did not answer",
            "no-device": "no such video device /dev/video99",
        }
        with agents(cameras, redis_server.url, settings):
            for camera, reason in expected.items():
                wait_for(
                    lambda c=camera, r=reason: r in _last_error(client, c),
                    what=f"{camera}'s error",
                )
            wait_for(lambda: client.xlen(keys.frames("g1")) >= 10, what="the good camera")
    cameras_seen = {f.camera for f in _frames(client)}
    assert cameras_seen == {"good"}


def test_camera_survives_a_redis_restart(
    rtsp: RtspServer, settings: Settings, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    client = redis.Redis.from_url(server.url)
    try:
        with agents([_camera(rtsp.url)], server.url, settings):
            wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="first frames")
            server.stop()
            time.sleep(1.5)  # a real outage while the camera keeps reading
            server.start()
            client = redis.Redis.from_url(server.url)
            before = client.xlen(keys.frames("g1"))
            wait_for(lambda: client.xlen(keys.frames("g1")) >= before + 5, what="frames again")
            wait_for(lambda: (h := _health(client, "c1")) and h.redis_errors > 0, what="report")
        seqs = [f.seq for f in _frames(client)]
        assert seqs == sorted(seqs)
    finally:
        server.stop()


class _JpegHandler(http.server.BaseHTTPRequestHandler):
    frames: list[bytes] = []  # noqa: RUF012 -- set by the fixture before serving

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/private":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.end_headers()
        elif self.path == "/snapshot.jpg":
            body = self.frames[int(time.time() * 10) % len(self.frames)]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for index in range(600):
                    body = self.frames[index % len(self.frames)]
                    header = "--frame\r\nContent-Type: image/jpeg\r\n"
                    header += f"Content-Length: {len(body)}\r\n\r\n"
                    self.wfile.write(header.encode() + body + b"\r\n")
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self.send_error(404)


def test_http_mjpeg_stream_and_snapshot_sources(
    rtsp_frames: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    _JpegHandler.frames = [p.read_bytes() for p in sorted(rtsp_frames.glob("*.jpg"))]
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _JpegHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{httpd.server_address[1]}"
    base = f"http://{host}"
    cameras = [
        _camera(f"{base}/stream", "mjpeg"),
        _camera(f"{base}/snapshot.jpg", "snap", snapshot_interval_s=0.2),
        _camera(f"{base}/missing", "missing"),
        _camera(f"http://viewer:wrong@{host}/private", "private"),
    ]
    try:
        with agents(cameras, redis_server.url, settings):
            wait_for(
                lambda: (
                    {f.camera for f in _frames(client)} >= {"mjpeg", "snap"}
                    and sum(f.camera == "mjpeg" for f in _frames(client)) >= 5
                ),
                what="frames from both HTTP cameras",
            )
            wait_for(
                lambda: "no such path (HTTP 404)" in _last_error(client, "missing"),
                what="the 404",
            )
            wait_for(
                lambda: "authentication failed (HTTP 401)" in _last_error(client, "private"),
                what="the 401",
            )
            private = _health(client, "private")
            assert private is not None and "wrong" not in private.model_dump_json()
            assert private.source == f"http://viewer:***@{host}/private"
    finally:
        httpd.shutdown()
    mjpeg = [f for f in _frames(client) if f.camera == "mjpeg"]
    assert (mjpeg[0].w, mjpeg[0].h) == (640, 360)


def test_camera_command_stops_on_sigterm(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    command = [sys.executable, "-m", "facestream", "--redis-url", redis_server.url, "camera",
               "--source", rtsp.url, "--camera-id", "cli", "--group", "g1"]  # fmt: skip
    agent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="frames")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(5) == 0
    finally:
        agent.kill()


def test_rtsp_over_udp_beside_tcp(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    """Both transports in one process (their opens then take turns)."""
    cameras = [_camera(rtsp.url, "udp", rtsp_transport="udp"), _camera(rtsp.url, "tcp")]
    with agents(cameras, redis_server.url, settings):
        wait_for(
            lambda: (
                {"udp", "tcp"} <= {f.camera for f in _frames(client)}
                and sum(f.camera == "udp" for f in _frames(client)) >= 5
            ),
            what="frames over UDP and TCP",
        )


# -- riding out failures: every test below runs without GStreamer ---------------------------


@pytest.fixture(scope="module")
def clip(rtsp_frames: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RTSP test frames as a 10 fps MJPEG file: a file camera plays it in real time."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 360))
    for frame in sorted(rtsp_frames.glob("*.jpg")):
        writer.write(cv2.imread(str(frame)))
    writer.release()
    return path


def _alive(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def test_publisher_memory_stays_flat_over_10000_frames(
    client: redis.Redis, settings: Settings
) -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    frame = EncodedFrame(cv2.imencode(".jpg", image)[1].tobytes(), 32, 32)
    publisher = FramePublisher(client, "g1", "c1", 100, settings.limits)
    for _ in range(10_000):
        publisher.publish(frame)
    assert publisher.seq == 10_000
    assert len(publisher._unread) <= 100 and publisher._in_doubt is None
    assert client.xlen(keys.frames("g1")) < 1_000  # MAXLEN ~ trims in whole nodes


def test_a_refused_xadd_keeps_the_publisher_running_until_fixed(
    clip: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    stream = keys.frames("g1")
    with agents([_camera(str(clip), kind="file", fps=10)], redis_server.url, settings):
        wait_for(lambda: client.xlen(stream) >= 3, what="first frames")
        client.delete(stream)
        client.set(stream, "not a stream")  # every XADD now fails with WRONGTYPE
        wait_for(lambda: "WRONGTYPE" in _last_error(client, "c1"), what="the refusal reported")
        health = _health(client, "c1")
        assert health is not None and health.redis_errors > 0
        assert _alive("publish:c1")
        client.delete(stream)
        wait_for(lambda: client.exists(stream) and client.xlen(stream) >= 3, what="recovery")
    assert camera_counter("restarts", "c1")._value.get() == 0


def test_frames_over_the_limits_are_downscaled_or_rejected_one_by_one(
    clip: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    camera = _camera(str(clip), "big", kind="file", fps=10)
    few_pixels = settings.model_copy(update={"limits": FrameLimits(max_pixels=320 * 180)})
    with agents([camera], redis_server.url, few_pixels):
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="downscaled frames")
    assert all(f.w * f.h <= 320 * 180 and f.w >= 300 for f in _frames(client))

    client.delete(keys.frames("g1"))
    rejected = camera_counter("rejected", "big")._value.get()
    few_bytes = settings.model_copy(update={"limits": FrameLimits(max_bytes=1024)})
    with agents([camera], redis_server.url, few_bytes):
        wait_for(
            lambda: camera_counter("rejected", "big")._value.get() >= rejected + 5,
            what="frames rejected one by one",
        )
        wait_for(lambda: "over the limit of 1024" in _last_error(client, "big"), what="health")
        assert _alive("publish:big")
    assert client.xlen(keys.frames("g1")) == 0


class _Injected(Exception):
    """Stands for any bug that escapes a camera thread's loop."""


def _kill_thread(name: str) -> None:
    """Raise _Injected inside the named thread: it dies as a thread hit by a bug does."""
    (thread,) = _alive(name)
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident or 0), ctypes.py_object(_Injected)
    )
    assert hit == 1


def test_a_dead_camera_thread_is_restarted_and_reported(
    clip: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    restarts = camera_counter("restarts", "c1")._value.get()
    with agents([_camera(str(clip), kind="file", fps=10)], redis_server.url, settings):
        for role in ("publish", "read"):
            wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="frames")
            (before,) = _alive(f"{role}:c1")
            _kill_thread(f"{role}:c1")
            wait_for(
                lambda r=role: _last_error(client, "c1").startswith(f"{r} thread died (_Injected"),
                what=f"the {role} thread's death in the health report",
            )
            client.delete(keys.frames("g1"))
            wait_for(lambda: client.xlen(keys.frames("g1")) >= 3, what="frames again")
            assert _alive(f"{role}:c1") != [before]
    assert camera_counter("restarts", "c1")._value.get() == restarts + 2


class _TroubleHandler(http.server.BaseHTTPRequestHandler):
    """/drip: a snapshot sent a byte at a time; /flap: every other snapshot request fails."""

    frame = b""
    requests = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).requests += 1
        if self.path == "/flap" and type(self).requests % 2 == 0:
            self.send_error(503)
            return
        body = self.frame
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if self.path == "/flap":
                self.wfile.write(body)
                return
            for index in range(600):  # 30 s at most
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def trouble_server(frame: bytes) -> Iterator[str]:
    _TroubleHandler.frame, _TroubleHandler.requests = frame, 0
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TroubleHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_dripping_snapshot_is_cut_off_and_never_stacks_readers(
    rtsp_frames: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    frame = next(rtsp_frames.glob("*.jpg")).read_bytes()
    readers: list[int] = []

    def cut_off_three_times(logs: list[dict[str, object]]) -> bool:
        readers.append(len(_alive("read:drip")))
        return sum("snapshot too slow" in str(e.get("error")) for e in logs) >= 3

    with trouble_server(frame) as base, capture_logs() as logs:
        # The watchdog fires (stall_s) long before the read deadline (read_timeout_s) is up.
        camera = _camera(f"{base}/drip", "drip", kind="snapshot", read_timeout_s=1.5,
                         stall_s=0.5, backoff_base_s=0.05, backoff_cap_s=0.1)  # fmt: skip
        with agents([camera], redis_server.url, settings):
            wait_for(lambda: cut_off_three_times(logs), what="three cut-off snapshots")
    assert max(readers) == 1
    assert any(str(e.get("error", "")).startswith("stalled") for e in logs)


def test_a_flapping_source_keeps_backing_off(
    rtsp_frames: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    frame = next(rtsp_frames.glob("*.jpg")).read_bytes()
    with trouble_server(frame) as base, capture_logs() as logs:
        camera = _camera(f"{base}/flap", "flap", kind="snapshot", snapshot_interval_s=0.01,
                         backoff_base_s=0.01, backoff_cap_s=0.2, stable_s=60)  # fmt: skip
        with agents([camera], redis_server.url, settings):
            wait_for(
                lambda: sum(e["event"] == "reconnecting" for e in logs) >= 6,
                what="six reconnects",
            )
    failures = [e["failures"] for e in logs if e["event"] == "reconnecting"]
    assert failures[:6] == [1, 2, 3, 4, 5, 6]  # a good frame between each did not reset it
    assert camera_counter("frames_in", "flap")._value.get() >= 6


# -- cost: the substream, and the camera's own JPEGs sent as they are -----------------------


@pytest.fixture(scope="module")
def substream_frames(rtsp_frames: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RTSP test frames at 384x216, as a camera's low-resolution substream (RTP/JPEG
    carries sides in multiples of 8: 180 would arrive as 184)."""
    folder = tmp_path_factory.mktemp("substream-frames")
    for frame in sorted(rtsp_frames.glob("*.jpg")):
        cv2.imwrite(str(folder / frame.name), cv2.resize(cv2.imread(str(frame)), (384, 216)))
    return folder


def test_a_camera_with_a_substream_publishes_the_substream(
    rtsp: RtspServer, substream_frames: Path, client: redis.Redis,
    redis_server: EmbeddedRedis, settings: Settings,
) -> None:  # fmt: skip
    substream = RtspServer(substream_frames)
    substream.start()
    try:
        camera = _camera(rtsp.url, substream=substream.url.replace("/cam", "/cam?sub"))
        with agents([camera], redis_server.url, settings):
            wait_for(lambda: client.xlen(keys.frames("g1")) >= 5, what="substream frames")
            wait_for(lambda: _health(client, "c1") is not None, what="health")
            health = _health(client, "c1")
    finally:
        substream.stop()
    frames = _frames(client)
    assert {(f.w, f.h) for f in frames} == {(384, 216)}
    assert {jpeg_size(f.img) for f in frames} == {(384, 216)}
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert health is not None and health.source.endswith("/cam?sub")


def _quantisation(jpeg: bytes) -> bytes:
    """The JPEG's quantisation tables (its DQT segments): they tell which quality encoded it."""
    tables, at = b"", 2
    while jpeg[at : at + 2] != b"\xff\xda":  # up to the start of scan
        length = int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if jpeg[at + 1] == 0xDB:
            tables += jpeg[at + 4 : at + 2 + length]
        at += 2 + length
    return tables


def test_rtsp_mjpeg_frames_are_the_cameras_jpegs_not_re_encoded(
    rtsp: RtspServer, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    # The server encodes at quality 90; a frame re-encoded by the agent would carry 50's tables.
    with agents([_camera(rtsp.url, jpeg_quality=50)], redis_server.url, settings):
        wait_for(lambda: client.xlen(keys.frames("g1")) >= 5, what="frames")
    frames = _frames(client)
    image = np.zeros((64, 64, 3), np.uint8)
    encoded = {q: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])[1] for q in (50, 90)}
    tables = {q: _quantisation(jpeg.tobytes()) for q, jpeg in encoded.items()}
    assert tables[50] != tables[90]
    assert {_quantisation(f.img) for f in frames} == {tables[90]}
    assert [f.seq for f in frames] == list(range(len(frames)))


def test_mjpeg_bytes_pass_through_when_they_fit_and_are_re_encoded_when_not(
    rtsp_frames: Path, client: redis.Redis, redis_server: EmbeddedRedis, settings: Settings
) -> None:
    served = [p.read_bytes() for p in sorted(rtsp_frames.glob("*.jpg"))]
    _JpegHandler.frames = served
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _JpegHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    stream = f"{base}/stream"
    snapshot = _camera(f"{base}/snapshot.jpg", "snap", snapshot_interval_s=0.2)
    few_pixels = settings.model_copy(update={"limits": FrameLimits(max_pixels=320 * 180)})
    try:
        with agents([_camera(stream, "fits"), snapshot], redis_server.url, settings):
            wait_for(
                lambda: (
                    {"fits", "snap"} <= {f.camera for f in _frames(client)}
                    and client.xlen(keys.frames("g1")) >= 6
                ),
                what="frames that fit",
            )
        sent = client.xlen(keys.frames("g1"))
        with agents([_camera(stream, "over")], redis_server.url, few_pixels):
            wait_for(
                lambda: client.xlen(keys.frames("g1")) >= sent + 5, what="frames over the limit"
            )
    finally:
        httpd.shutdown()
    frames = _frames(client)
    fits = [f for f in frames if f.camera in ("fits", "snap")]
    over = [f for f in frames if f.camera == "over"]
    assert all(f.img in served and (f.w, f.h) == (640, 360) for f in fits)
    assert over and all(f.img not in served and f.w * f.h <= 320 * 180 for f in over)
    assert all(jpeg_size(f.img) == (f.w, f.h) for f in over)
    for camera in ("fits", "snap", "over"):
        seqs = [f.seq for f in frames if f.camera == camera]
        assert seqs == list(range(len(seqs)))


def test_a_cameras_own_picture_is_passed_through_only_as_a_whole_jpeg() -> None:
    """A camera's JPEG goes out byte for byte; one cut short (a packet lost) is refused with
    the reason (the agent counts it as rejected), and a PNG snapshot is re-encoded as JPEG."""
    image = cv2.imread(str(FACES / "test" / "obama1.jpg"))
    whole = bytes(cv2.imencode(".jpg", image)[1])
    assert camera_jpeg(whole, 85, None, FrameLimits()).jpeg == whole
    with pytest.raises(InvalidFrame, match="truncated JPEG"):
        camera_jpeg(whole[: len(whole) // 2], 85, None, FrameLimits())
    png = bytes(cv2.imencode(".png", image)[1])
    sent = camera_jpeg(png, 85, None, FrameLimits())
    assert jpeg_size(sent.jpeg) == (image.shape[1], image.shape[0])
