"""Frame sources for replay: a video file (anything FFmpeg decodes) or a folder of images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import structlog
from numpy.typing import NDArray

from facestream.schemas import SourceError

from .publisher import EncodedFrame

__all__ = ["IMAGE_SUFFIXES", "EncodedFrame", "encode_jpeg", "iter_frames", "native_fps"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})

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


def iter_frames(
    path: Path, quality: int = 90, max_side: int | None = None
) -> Iterator[EncodedFrame]:
    """Frames of a video file, an image, or an image folder (sorted by name), as JPEG."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
        yield from _image_frames(files, quality, max_side)
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        yield from _image_frames([path], quality, max_side)
    elif path.is_file():
        yield from _video_frames(path, quality, max_side)
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


def _image_frames(files: list[Path], quality: int, max_side: int | None) -> Iterator[EncodedFrame]:
    for file in files:
        data = file.read_bytes()
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            log.warning("skipping unreadable image", file=str(file))
            continue
        image = np.asarray(decoded, dtype=np.uint8)
        height, width = image.shape[:2]
        fits = max_side is None or max(height, width) <= max_side
        if file.suffix.lower() in _JPEG_SUFFIXES and fits:
            # Send JPEGs byte for byte: the same photo always hashes the same (cache hits).
            yield EncodedFrame(data, width, height)
        else:
            jpeg, width, height = encode_jpeg(image, quality, max_side)
            yield EncodedFrame(jpeg, width, height)


def _video_frames(file: Path, quality: int, max_side: int | None) -> Iterator[EncodedFrame]:
    capture = cv2.VideoCapture(str(file))
    if not capture.isOpened():
        raise SourceError(f"{file}: not a video OpenCV/FFmpeg can open")
    try:
        decoded = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            jpeg, width, height = encode_jpeg(np.asarray(image, np.uint8), quality, max_side)
            yield EncodedFrame(jpeg, width, height)
            decoded += 1
        if decoded == 0:
            raise SourceError(f"{file}: opened, but no frame could be decoded")
    finally:
        capture.release()
