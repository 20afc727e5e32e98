"""Frame sources for replay: a video file (anything FFmpeg decodes) or a folder of images."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import structlog
from numpy.typing import NDArray

from facestream.schemas import FrameLimits, InvalidFrame, SourceError, jpeg_size
from facestream.schemas.images import image_size

from .publisher import EncodedFrame

__all__ = [
    "IMAGE_SUFFIXES",
    "EncodedFrame",
    "camera_jpeg",
    "encode_jpeg",
    "fit_side",
    "iter_frames",
    "native_fps",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
# Photos over the pixel limit are decoded reduced (JPEG: by libjpeg's DCT scaling, cheap) and
# scaled to fit; beyond these multiples of the limit they are skipped, as no scaling is cheap.
_REDUCED = ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2),
            (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8))  # fmt: skip
_MOST_OVER = {True: 64, False: 4}  # JPEG or not

log = structlog.get_logger("ingest.sources")


def encode_jpeg(
    image: NDArray[np.uint8], quality: int = 90, max_side: int | None = None
) -> tuple[bytes, int, int]:
    """JPEG-encode a BGR image, first shrinking it so its longer side is at most `max_side`."""
    height, width = image.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (round(width * scale), round(height * scale))
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        height, width = image.shape[:2]
    try:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:  # e.g. a side over JPEG's 65,500 pixels
        raise SourceError(f"OpenCV could not JPEG-encode a {width}x{height} frame") from exc
    if not ok:
        raise SourceError(f"OpenCV could not JPEG-encode a {width}x{height} frame")
    return buffer.tobytes(), width, height


def camera_jpeg(
    data: bytes, quality: int, max_side: int | None, limits: FrameLimits
) -> EncodedFrame:
    """A camera's own JPEG (MJPEG, snapshot), sent byte for byte where it fits `max_side` and
    the limits: no decode, no re-encode. Otherwise decoded (reduced by libjpeg's DCT scaling
    where it is at least twice the size wanted) and re-encoded at `quality` to fit."""
    width, height = image_size(data)  # InvalidFrame: not an image this can measure
    jpeg = data.startswith(b"\xff\xd8\xff")
    if jpeg:
        # A JPEG cut short (a packet lost over RTSP) is rejected here, counted, not sent for a
        # worker to dead-letter; OpenCV would fill its missing part with grey and say nothing.
        jpeg_size(data)
    side = fit_side(width, height, max_side, limits.max_pixels)
    if jpeg and side is None and len(data) <= limits.max_bytes:  # frames are JPEGs, only
        return EncodedFrame(data, width, height)
    longest = max(width, height)
    reduction = 1 if side is None else max(r for r, _ in _REDUCED if longest / r >= side)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), dict(_REDUCED)[reduction])
    if image is None:
        raise InvalidFrame(f"the camera's {width}x{height} JPEG could not be decoded")
    return EncodedFrame(*encode_jpeg(np.asarray(image, np.uint8), quality, side))


def fit_side(width: int, height: int, max_side: int | None, max_pixels: int | None) -> int | None:
    """The longest side to scale a width x height image to (None: leave it), at most
    `max_side` and small enough to fit `max_pixels`, as `encode_jpeg` rounds the sides."""
    longest = max(width, height)
    limit = max_side or longest
    if max_pixels is not None and width * height > max_pixels:
        fit = math.floor(longest * math.sqrt(max_pixels / (width * height)))
        while fit > 1 and _scaled_pixels(width, height, fit) > max_pixels:
            fit -= 1
        limit = min(limit, fit)
    return limit if limit < longest else None


def _scaled_pixels(width: int, height: int, max_side: int) -> int:
    scale = max_side / max(width, height)
    return round(width * scale) * round(height * scale)


def iter_frames(
    path: Path, quality: int = 90, max_side: int | None = None, max_pixels: int | None = None
) -> Iterator[EncodedFrame]:
    """Frames of a video file, an image, or an image folder (sorted by name), as JPEG, each
    scaled down to `max_side` and to fit `max_pixels` (as camera agents do)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
        yield from _image_frames(files, quality, max_side, max_pixels)
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        yield from _image_frames([path], quality, max_side, max_pixels)
    elif path.is_file():
        yield from _video_frames(path, quality, max_side, max_pixels)
    else:
        raise SourceError(f"{path}: no such file or folder")


def native_fps(path: Path) -> float | None:
    """The frame rate a video declares (None for folders or when it declares none)."""
    if not path.is_file():
        return None
    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    return fps if 0 < fps < 1000 else None


def _image_frames(
    files: list[Path], quality: int, max_side: int | None, max_pixels: int | None
) -> Iterator[EncodedFrame]:
    for file in files:
        data = file.read_bytes()
        decoded = _decode(file, data, max_pixels)
        if decoded is None:
            continue
        image = np.asarray(decoded, dtype=np.uint8)
        height, width = image.shape[:2]
        side = fit_side(width, height, max_side, max_pixels)
        if file.suffix.lower() in _JPEG_SUFFIXES and side is None:
            # Send JPEGs byte for byte: the same photo always hashes the same (cache hits).
            yield EncodedFrame(data, width, height)
        else:
            jpeg, width, height = encode_jpeg(image, quality, side)
            yield EncodedFrame(jpeg, width, height)


def _decode(file: Path, data: bytes, max_pixels: int | None) -> NDArray[np.uint8] | None:
    """The image, decoded reduced where it is far over `max_pixels`; None (said once in
    the log) where it is unreadable or too far over the limit to scale down cheaply."""
    try:
        width, height = image_size(data)
    except InvalidFrame as exc:
        log.warning("skipping unreadable image", file=str(file), error=str(exc))
        return None
    flag = cv2.IMREAD_COLOR
    if max_pixels is not None and width * height > max_pixels:
        jpeg = data.startswith(b"\xff\xd8")
        if width * height > _MOST_OVER[jpeg] * max_pixels:
            log.warning(
                "skipping image far over limits.max_pixels",
                file=str(file),
                size=f"{width}x{height}",
                max_pixels=max_pixels,
            )
            return None
        if jpeg:  # the smallest reduction that still leaves at least the limit to scale
            flag = next(f for r, f in reversed(_REDUCED) if width * height / r**2 > max_pixels)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if decoded is None:
        log.warning("skipping unreadable image", file=str(file))
        return None
    return np.asarray(decoded, dtype=np.uint8)


def _video_frames(
    file: Path, quality: int, max_side: int | None, max_pixels: int | None
) -> Iterator[EncodedFrame]:
    capture = cv2.VideoCapture(str(file))
    if not capture.isOpened():
        raise SourceError(f"{file}: not a video OpenCV/FFmpeg can open")
    try:
        decoded = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            height, width = image.shape[:2]
            side = fit_side(width, height, max_side, max_pixels)
            jpeg, width, height = encode_jpeg(np.asarray(image, np.uint8), quality, side)
            yield EncodedFrame(jpeg, width, height)
            decoded += 1
        if decoded == 0:
            raise SourceError(f"{file}: opened, but no frame could be decoded")
    finally:
        capture.release()
