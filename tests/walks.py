"""Synthetic walks: real photos of people moved, scaled and blurred across a corridor, as video.

There is no recorded video in the repository. These clips are synthetic motion of the bundled
real photos (tests/data/faces, MIT): each person's head and shoulders, cut from one photo,
walks across a drawn background, grows as it comes closer and is blurred for a stretch (motion
blur, focus). The frames are encoded as a real video file with OpenCV (mp4v) and decoded back,
so the recogniser sees codec artefacts as it would from a camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import redis
from numpy.typing import NDArray

from facestream.ingest import EncodedFrame, FramePublisher, iter_frames
from facestream.recognizer import FaceEngine
from facestream.schemas import FrameLimits

__all__ = ["SIZE", "Walker", "paste", "publish_clip", "record", "render"]

SIZE = (640, 360)


@dataclass(frozen=True)
class Walker:
    """One person crossing the picture: on screen for frames [start, end)."""

    photo: Path
    start: int
    end: int
    x: tuple[float, float] = (0.1, 0.9)  # face centre, as a fraction of the width, start → end
    y: float = 0.4
    face_px: tuple[float, float] = (70.0, 100.0)  # face height in pixels, start → end
    blur: tuple[int, int] = (0, 0)  # frames [a, b) of the clip blurred

    def at(self, frame: int, size: tuple[int, int] = SIZE) -> tuple[float, float, float] | None:
        """Centre x, y and face height in pixels at `frame` of a picture of `size`, or None
        when off screen."""
        if not self.start <= frame < self.end:
            return None
        t = (frame - self.start) / max(self.end - self.start - 1, 1)
        width, height = size
        x = (self.x[0] + (self.x[1] - self.x[0]) * t) * width
        return x, self.y * height, self.face_px[0] + (self.face_px[1] - self.face_px[0]) * t


def _background(size: tuple[int, int]) -> NDArray[np.uint8]:
    """A corridor: a grey gradient, doors, a little fixed noise (no faces)."""
    width, height = size
    unit = width / SIZE[0]  # the doors of the 640-wide corridor, scaled
    ramp = np.linspace(70, 140, width, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[np.newaxis, :, np.newaxis], height, 0), 3, 2)
    for left in range(round(40 * unit), width, round(160 * unit)):
        top, bottom = round(60 * unit), height - round(30 * unit)
        cv2.rectangle(image, (left, top), (left + round(70 * unit), bottom), (60, 75, 95), -1)
    noise = np.random.default_rng(7).normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _sprite(engine: FaceEngine, photo: Path) -> tuple[NDArray[np.uint8], float, float, float]:
    """Head and shoulders of the largest face of `photo`: crop, face centre x/y and height."""
    image = np.asarray(cv2.imread(str(photo), cv2.IMREAD_COLOR), np.uint8)
    detections = engine.detector.detect(image)
    x, y, w, h = max(detections, key=lambda d: d.box[2] * d.box[3]).box
    left, top = max(int(x - 0.6 * w), 0), max(int(y - 0.6 * h), 0)
    right = min(int(x + 1.6 * w), image.shape[1])
    bottom = min(int(y + 1.8 * h), image.shape[0])
    crop = np.ascontiguousarray(image[top:bottom, left:right])
    return crop, x + w / 2 - left, y + h / 2 - top, h


def render(
    engine: FaceEngine, walkers: Sequence[Walker], frames: int, size: tuple[int, int] = SIZE
) -> list[NDArray[np.uint8]]:
    """The clip's frames at `size`; later walkers are drawn over earlier ones (closer to the
    camera)."""
    background = _background(size)
    sprites = {w.photo: _sprite(engine, w.photo) for w in walkers}
    clip = []
    for index in range(frames):
        canvas = background.copy()
        for walker in walkers:
            place = walker.at(index, size)
            if place is None:
                continue
            crop, cx, cy, face_h = sprites[walker.photo]
            scale = place[2] / face_h
            sprite = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            if walker.blur[0] <= index < walker.blur[1]:
                sprite = cv2.GaussianBlur(sprite, (0, 0), 2.5)
            paste(canvas, sprite, round(place[0] - cx * scale), round(place[1] - cy * scale))
        clip.append(canvas)
    return clip


def paste(canvas: NDArray[np.uint8], sprite: NDArray[np.uint8], left: int, top: int) -> None:
    """Blend `sprite` in with a soft oval edge, clipped to the canvas."""
    h, w = sprite.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(w, h) / 30)[..., np.newaxis]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    part = sprite[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    alpha = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    below = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (alpha * part + (1 - alpha) * below).astype(np.uint8)


def record(frames: Sequence[NDArray[np.uint8]], path: Path, fps: float) -> list[bytes]:
    """Encode the frames as an mp4v video at `path`, decode it back; its frames as JPEG."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return [encoded.jpeg for encoded in iter_frames(path)]


def publish_clip(
    client: redis.Redis,
    group: str,
    camera: str,
    jpegs: Sequence[bytes],
    fps: float,
    start_ms: int,
) -> list[str]:
    """Send a clip as one camera's frames, captured `1/fps` apart from `start_ms`."""
    publisher = FramePublisher(client, group, camera, 100_000, FrameLimits())
    return [
        publisher.publish(EncodedFrame(jpeg, *SIZE), start_ms + round(index * 1000 / fps))
        for index, jpeg in enumerate(jpegs)
    ]
