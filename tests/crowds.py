"""Synthetic crowds: the bundled real faces pasted small on a large canvas, and mosaics of clips.

No crowd photo in the repository may be bundled, so crowds are made of what may be: every face
of the labelled photos (tests/data/faces, MIT), cut with its head and pasted at the sizes faces
have in a crowd seen by a 1080p camera (24–48 px high), on a drawn background; and mosaics of
the strangers' frames (tests/data/strangers, CC BY 4.0), sixteen 480×270 frames to a 1920×1080
picture, so their real small faces become a high-resolution crowd's. The truth is where each
face was pasted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from facestream.recognizer import FaceEngine
from facestream.recognizer.detector import Detection

from .helpers import FACES
from .walks import paste

__all__ = ["Crowd", "Head", "count", "crowd", "heads", "mosaic", "read_image"]

Box = tuple[float, float, float, float]
FULL_HD = (1920, 1080)


@dataclass(frozen=True)
class Head:
    """A face cut out with its head and shoulders, and its box in the cut-out."""

    image: NDArray[np.uint8]
    box: Box


@dataclass(frozen=True)
class Crowd:
    """A picture and the box of every face in it."""

    image: NDArray[np.uint8]
    faces: list[Box]

    def resized(self, width: int) -> Crowd:
        """The same scene as a camera of this width sees it."""
        scale = width / self.image.shape[1]
        size = (width, round(self.image.shape[0] * scale))
        image = np.asarray(cv2.resize(self.image, size, interpolation=cv2.INTER_AREA), np.uint8)
        return Crowd(
            image, [(x * scale, y * scale, w * scale, h * scale) for x, y, w, h in self.faces]
        )


def heads(engine: FaceEngine, least_px: float = 60.0) -> list[Head]:
    """Every face at least `least_px` high in the labelled photos, with room around it."""
    cut = []
    for photo in sorted(FACES.rglob("*.jpg")):
        image = np.asarray(cv2.imread(str(photo), cv2.IMREAD_COLOR), np.uint8)
        for detection in engine.detector.detect(image, tiled=False):
            x, y, w, h = detection.box
            if h < least_px:
                continue
            left, top = max(int(x - 0.5 * w), 0), max(int(y - 0.5 * h), 0)
            right, bottom = (
                min(int(x + 1.5 * w), image.shape[1]),
                min(int(y + 1.5 * h), image.shape[0]),
            )
            crop = np.ascontiguousarray(image[top:bottom, left:right])
            cut.append(Head(crop, (x - left, y - top, w, h)))
    return cut


def crowd(
    cut: Sequence[Head],
    count: int = 60,
    face_px: tuple[float, float] = (24.0, 48.0),
    size: tuple[int, int] = FULL_HD,
    seed: int = 0,
    seams: tuple[Sequence[int], Sequence[int]] = ((), ()),
) -> Crowd:
    """`count` faces (the heads in turn, every other one mirrored), `face_px` high, each in its
    own cell of a grid over a drawn background; a face whose cell a seam (x lines, y lines)
    crosses is centred on that seam."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = _background(size, rng)
    cell = round(face_px[1] * 2.2)
    columns, rows = width // cell, height // cell
    if columns * rows < count:
        raise ValueError(f"{count} faces of {face_px[1]} px do not fit in {width}×{height}")
    faces: list[Box] = []
    for index, place in enumerate(rng.permutation(columns * rows)[:count]):
        head = cut[index % len(cut)]
        scale = rng.uniform(*face_px) / head.box[3]
        sprite = cv2.resize(head.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        x, y, w, h = (v * scale for v in head.box)
        if index % 2:
            sprite = np.ascontiguousarray(sprite[:, ::-1])
            x = sprite.shape[1] - x - w
        left = (place % columns) * cell + int(rng.integers(0, max(cell - sprite.shape[1], 1)))
        top = (place // columns) * cell + int(rng.integers(0, max(cell - sprite.shape[0], 1)))
        left = _on_seam(left, (place % columns) * cell, cell, x + w / 2, seams[0])
        top = _on_seam(top, (place // columns) * cell, cell, y + h / 2, seams[1])
        paste(image, sprite, left, top)
        faces.append((left + x, top + y, w, h))
    return Crowd(image, faces)


def mosaic(
    frames: Sequence[NDArray[np.uint8]], size: tuple[int, int] = FULL_HD
) -> NDArray[np.uint8]:
    """The frames side by side, in turn (every second round mirrored), filling `size`."""
    width, height = size
    tile_h, tile_w = frames[0].shape[:2]
    image = np.zeros((height, width, 3), np.uint8)
    index = 0
    for top in range(0, height - tile_h + 1, tile_h):
        for left in range(0, width - tile_w + 1, tile_w):
            frame = frames[index % len(frames)]
            if (index // len(frames)) % 2:
                frame = frame[:, ::-1]
            image[top : top + tile_h, left : left + tile_w] = frame
            index += 1
    return image


def count(detections: Sequence[Detection], truth: Sequence[Box]) -> tuple[int, int, int]:
    """Faces found (overlapping a true face by IoU ≥ 0.3), found twice, and false detections."""
    hits = np.zeros(len(truth), dtype=int)
    false = 0
    for detection in detections:
        overlaps = [_iou(detection.box, face) for face in truth]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best >= 0 and overlaps[best] >= 0.3:
            hits[best] += 1
        else:
            false += 1
    return int((hits > 0).sum()), int((hits > 1).sum()), false


def _on_seam(start: int, cell_start: int, cell: int, centre: float, seams: Sequence[int]) -> int:
    """Where a sprite starts so that its face's centre is on a seam crossing its cell."""
    crossing = [seam for seam in seams if cell_start <= seam < cell_start + cell]
    return round(crossing[0] - centre) if crossing else start


def _iou(a: Box, b: Box) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _background(size: tuple[int, int], rng: np.random.Generator) -> NDArray[np.uint8]:
    """A hall: a grey gradient, pillars, a little noise (no faces)."""
    width, height = size
    ramp = np.linspace(60, 150, width, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[np.newaxis, :, np.newaxis], height, 0), 3, 2)
    for left in range(60, width, 300):
        cv2.rectangle(image, (left, 0), (left + 80, height), (80, 90, 105), -1)
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def read_image(path: Path) -> NDArray[np.uint8]:
    """A bundled photo or frame, BGR."""
    return np.asarray(cv2.imread(str(path), cv2.IMREAD_COLOR), np.uint8)
