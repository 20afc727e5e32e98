"""Open live sources (RTSP, HTTP MJPEG or snapshot, V4L2 device, file) and explain failures."""

from __future__ import annotations

import http.client
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np
from numpy.typing import NDArray

from facestream.schemas import SourceError
from facestream.schemas.urls import redact, without_userinfo

from .settings import CameraSettings

__all__ = ["FrameSource", "Picture", "open_source", "set_transports", "source_kind"]

# OpenCV reads FFmpeg options from this process-wide variable when a capture is opened. When all
# cameras use one RTSP transport it is set once and opens run in parallel; only a mix of
# transports forces opens to take turns (a slow open then delays the others).
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_OPEN_LOCK = threading.Lock()
_shared_transport: str | None = None
_DEVICE = re.compile(r"^(/dev/video\d+|\d+)$")
# No camera snapshot comes near this; a URL streaming more is not a snapshot.
_MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
_JPEG_START = b"\xff\xd8"


# A frame as its source gives it: decoded BGR pixels, or the camera's own JPEG bytes (MJPEG
# and snapshot sources), which are sent as they are where they fit the limits.
Picture = NDArray[np.uint8] | bytes


class FrameSource(Protocol):
    """A live source: `grab` takes the next frame (SourceError if none comes); `retrieve`
    returns the one grabbed last. A frame never retrieved costs no colour conversion."""

    def grab(self) -> None: ...

    def retrieve(self) -> Picture: ...

    def close(self) -> None: ...


def set_transports(cameras: Sequence[CameraSettings]) -> None:
    """Fix the RTSP transport for the process when every camera agrees on one.

    Also silences FFmpeg's and OpenCV's own stderr chatter (it bypasses our structured logs:
    "[ WARN:0@…] global cap.cpp:… VIDEOIO(FFMPEG)…" on every reconnect); each failure is
    reported by us as one line instead. Set OPENCV_FFMPEG_LOGLEVEL or OPENCV_LOG_LEVEL to see it.
    """
    global _shared_transport
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    transports = {camera.rtsp_transport for camera in cameras}
    _shared_transport = transports.pop() if len(transports) == 1 else None
    if _shared_transport is not None:
        os.environ[_FFMPEG_OPTIONS] = f"rtsp_transport;{_shared_transport}"


def source_kind(camera: CameraSettings) -> str:
    """rtsp, mjpeg, snapshot, device or file: the configured kind, or one guessed from the URL."""
    if camera.kind != "auto":
        return camera.kind
    source = camera.source
    if source.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if source.startswith(("http://", "https://")):
        return "mjpeg" if _http_content_type(camera).startswith("multipart/") else "snapshot"
    if _DEVICE.match(source):
        return "device"
    if "://" in source:
        raise SourceError(f"{redact(source)}: unsupported URL scheme (use rtsp, http or https)")
    return "file"


def open_source(camera: CameraSettings) -> FrameSource:
    """Open the camera's substream where it names one, else its source, or raise SourceError
    with a one-line reason."""
    if camera.substream is not None:
        camera = camera.model_copy(update={"source": camera.substream})
    kind = source_kind(camera)
    if kind == "snapshot":
        return SnapshotSource(camera)
    return CaptureSource(camera, kind)


class CaptureSource:
    """RTSP, MJPEG-over-HTTP, devices and files through OpenCV's FFmpeg/V4L2 backends."""

    def __init__(self, camera: CameraSettings, kind: str) -> None:
        self.camera = camera
        self.kind = kind
        self.capture = self._open()
        # MJPEG: take the camera's JPEG packets as they are (no decode); FFmpeg only demuxes.
        fourcc = (int(self.capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF).to_bytes(4, "little")
        self.passes_jpeg = (
            kind != "device"
            and fourcc == b"MJPG"
            and bool(self.capture.set(cv2.CAP_PROP_FORMAT, -1))
        )
        # A file plays in real time, like a recorded feed; live sources set their own pace.
        fps = float(self.capture.get(cv2.CAP_PROP_FPS)) if kind == "file" else 0.0
        self._frame_interval = 1.0 / fps if 0 < fps < 1000 else 0.0
        self._next_frame_at = time.monotonic()

    def _open(self) -> cv2.VideoCapture:
        camera = self.camera
        if self.kind == "device":
            device = camera.source
            path = Path(device if device.startswith("/") else f"/dev/video{device}")
            if not path.exists():
                raise SourceError(f"no such video device {path}")
            capture = cv2.VideoCapture(int(path.name.removeprefix("video")), cv2.CAP_V4L2)
        else:
            if self.kind == "file" and not Path(camera.source).is_file():
                raise SourceError(f"{camera.source}: no such file")
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(camera.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(camera.read_timeout_s * 1000),
                cv2.CAP_PROP_N_THREADS,
                camera.decode_threads,
            ]
            if _shared_transport == camera.rtsp_transport:
                capture = cv2.VideoCapture(camera.source, cv2.CAP_FFMPEG, params)
            else:
                with _OPEN_LOCK:
                    os.environ[_FFMPEG_OPTIONS] = f"rtsp_transport;{camera.rtsp_transport}"
                    capture = cv2.VideoCapture(camera.source, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(diagnose(camera, self.kind))
        return capture

    def grab(self) -> None:
        """The next frame: demuxed and (H.264 and the like) decoded, not yet converted to BGR."""
        if self._frame_interval:
            delay = self._next_frame_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_frame_at = max(self._next_frame_at, time.monotonic() - 1.0)
            self._next_frame_at += self._frame_interval
        if self.capture.grab():
            return
        if self.kind == "file":
            # A file camera loops, like a recorded feed on repeat.
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            if self.capture.grab():
                return
        raise SourceError("no frame from the source (ended, timed out or undecodable)")

    def retrieve(self) -> Picture:
        ok, data = self.capture.retrieve()
        if not ok or data is None:
            raise SourceError("a frame was received but could not be decoded")
        if self.passes_jpeg:
            return np.asarray(data, np.uint8).tobytes()
        return np.asarray(data, dtype=np.uint8)

    def close(self) -> None:
        self.capture.release()


class SnapshotSource:
    """An HTTP(S) URL that returns one JPEG per request, polled every `snapshot_interval_s`."""

    def __init__(self, camera: CameraSettings) -> None:
        self.camera = camera
        self._next = 0.0
        self._opener = _opener_with_credentials(camera.source)
        self._data = b""

    def grab(self) -> None:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = time.monotonic() + self.camera.snapshot_interval_s
        deadline = time.monotonic() + self.camera.read_timeout_s
        try:
            with self._opener.open(without_userinfo(self.camera.source),
                                   timeout=self.camera.read_timeout_s) as response:  # fmt: skip
                self._data = self._body(response, deadline)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise SourceError(_http_reason(self.camera.source, exc)) from exc

    def retrieve(self) -> Picture:
        if self._data.startswith(_JPEG_START):  # sent as it is where it fits the limits
            return self._data
        image = cv2.imdecode(np.frombuffer(self._data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError("snapshot is not a decodable image (unknown codec?)")
        return np.asarray(image, dtype=np.uint8)

    def _body(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        """The whole body by `deadline`: the socket timeout bounds each read only, so a server
        that drips bytes would hold the reader forever (at most one more socket timeout)."""
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(65536):
            size += len(chunk)
            if size > _MAX_SNAPSHOT_BYTES:
                raise SourceError(f"snapshot larger than {_MAX_SNAPSHOT_BYTES} bytes")
            if time.monotonic() > deadline:
                raise SourceError(
                    f"snapshot too slow: not complete within {self.camera.read_timeout_s:g}s "
                    f"({size} bytes so far)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        pass


def diagnose(camera: CameraSettings, kind: str) -> str:
    """Why a source could not be opened, as one line (the backends only say 'not opened')."""
    shown = redact(camera.source)
    if kind == "file":
        return f"{shown}: not a video OpenCV/FFmpeg can decode (unknown codec?)"
    if kind == "device":
        return f"{shown}: the device exists but cannot be opened (busy, or no permission?)"
    parts = urlsplit(camera.source)
    if not parts.hostname:
        return f"{shown}: bad URL (no host)"
    default_port = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(parts.scheme, 0)
    port = parts.port or default_port
    try:
        with socket.create_connection((parts.hostname, port), timeout=camera.open_timeout_s) as s:
            if kind == "rtsp":
                return f"{shown}: {_rtsp_status(s, camera.source)}"
    except socket.gaierror:
        return f"{shown}: unknown host {parts.hostname}"
    except OSError as exc:
        return f"{shown}: cannot connect to {parts.hostname}:{port} ({exc.strerror or exc})"
    if kind == "mjpeg":
        return f"{shown}: {_http_reason(camera.source, None)}"
    return f"{shown}: could not open the stream"


def _rtsp_status(sock: socket.socket, url: str) -> str:
    """Ask the server to DESCRIBE the stream and turn its answer into a reason."""
    target = without_userinfo(url)
    request = f"DESCRIBE {target} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    try:
        sock.sendall(request.encode())
        status = sock.recv(1024).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as exc:
        return f"server accepted the connection but did not answer ({exc})"
    if not status:
        return "server accepted the connection but sent nothing (stalled?)"
    if " 401 " in f"{status} " or " 403 " in f"{status} ":
        return f"authentication failed ({status})"
    if " 404 " in f"{status} ":
        return f"no such stream path ({status})"
    if status.startswith("RTSP/1.0 200"):
        return "the server offers the stream but it could not be decoded (unknown codec?)"
    return f"server answered {status!r}"


def _http_content_type(camera: CameraSettings) -> str:
    request = urllib.request.Request(without_userinfo(camera.source), method="GET")
    try:
        with _opener_with_credentials(camera.source).open(
            request, timeout=camera.open_timeout_s
        ) as response:
            return str(response.headers.get("Content-Type", ""))
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"{redact(camera.source)}: {_http_reason(camera.source, exc)}") from exc


def _http_reason(url: str, exc: BaseException | None) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (401, 403):
            return f"authentication failed (HTTP {exc.code})"
        if exc.code == 404:
            return "no such path (HTTP 404)"
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    if exc is not None:
        return f"read failed ({exc})"
    return "opened, but no frame could be decoded (not MJPEG, unknown codec?)"


def _opener_with_credentials(url: str) -> urllib.request.OpenerDirector:
    parts = urlsplit(url)
    if parts.username is None:
        return urllib.request.build_opener()
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, without_userinfo(url), parts.username, parts.password or "")
    return urllib.request.build_opener(
        urllib.request.HTTPBasicAuthHandler(passwords),
        urllib.request.HTTPDigestAuthHandler(passwords),
    )
