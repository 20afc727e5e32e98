"""Motion of a camera's frame against its reference: a grey thumbnail decoded almost for free.

libjpeg-turbo's DCT scaling (simplejpeg) decodes a JPEG at 1/8 of its size from the blocks'
DC coefficients alone, skipping the inverse transform of everything else (the entropy decode
stays: at 1080p the thumbnail costs about half a full decode, docs/tracks.md). A thumbnail
is differenced against the camera's reference (the thumbnail of the last frame the detector
ran on); the cells that changed by more than `motion_level` grey levels say whether the frame
needs the detector.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import simplejpeg
from numpy.typing import NDArray

from facestream.schemas.frames import jpeg_has_exif

__all__ = ["THUMB_WIDTH", "Judgement", "Scene", "Thumbnail", "judge", "thumbnail", "window"]

#: Thumbnail width in pixels: a 1/8 DCT-scaled decode of 640-wide video or more, resized down.
THUMB_WIDTH = 80
Box = tuple[float, float, float, float]
Scene = Literal["still", "windows", "scan"]  # skip detection / detect in windows / everywhere
_PATCH_GROWTH = 0.25


@dataclass(frozen=True)
class Thumbnail:
    """A frame's grey thumbnail and the frame's own size (to map boxes onto it)."""

    grey: NDArray[np.uint8]  # (h, THUMB_WIDTH)
    frame_size: tuple[int, int]  # width, height of the frame

    def encode(self) -> str:
        return base64.b64encode(self.grey.tobytes()).decode()

    @classmethod
    def decode(cls, text: str, frame_size: tuple[int, int]) -> Thumbnail | None:
        """The stored reference, or None when it does not fit a frame of that size."""
        height = _thumb_height(frame_size)
        raw = base64.b64decode(text) if text else b""
        if len(raw) != height * THUMB_WIDTH:
            return None
        grey = np.frombuffer(raw, dtype=np.uint8).reshape(height, THUMB_WIDTH)
        return cls(grey, frame_size)


def thumbnail(jpeg: bytes, frame_size: tuple[int, int]) -> Thumbnail | None:
    """The frame's grey thumbnail, or None when simplejpeg cannot read it or it carries Exif
    (its orientation would not be applied: the frame is detected in full, by OpenCV)."""
    try:
        if jpeg_has_exif(jpeg):
            return None
        small = simplejpeg.decode_jpeg(
            jpeg, colorspace="GRAY", fastdct=True, min_width=THUMB_WIDTH, min_height=1
        )
    except ValueError:
        return None
    grey = np.asarray(small, dtype=np.uint8).reshape(small.shape[0], small.shape[1])
    height = _thumb_height(frame_size)
    if grey.shape != (height, THUMB_WIDTH):
        import cv2  # the resize only: OpenCV is loaded by the detector anyway

        grey = np.asarray(
            cv2.resize(grey, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA), np.uint8
        )
    return Thumbnail(grey, frame_size)


@dataclass(frozen=True)
class Judgement:
    """What the detector must see of a frame, and the reference for the camera's next one."""

    scene: Scene
    reference: Thumbnail | None
    moving: tuple[Box, ...] = ()  # windows: where motion is outside tracked people (frame px)


def judge(
    reference: Thumbnail | None,
    current: Thumbnail | None,
    people: Sequence[Box],
    level: int,
    cut_fraction: float,
) -> Judgement:
    """What the detector must see of `current`.

    still: no cell moved; the reference's faces are this frame's (the reference stays).
    windows: motion stayed where tracked people are (`people`: frame pixels around each tracked
    face and its body) or in patches of the frame (`moving`: a window around each patch, where
    someone may be entering); together they cover under `cut_fraction` of the frame. The next
    reference is `current` in all those places and the old one elsewhere, so slow changes
    elsewhere still add up to motion. scan: a scene cut or motion all over (more than
    `cut_fraction` moved or would be windows), or no usable reference.
    """
    if reference is None or current is None or reference.grey.shape != current.grey.shape:
        return Judgement("scan", current)
    moved = np.abs(current.grey.astype(np.int16) - reference.grey.astype(np.int16)) > level
    count = int(moved.sum())
    if count == 0:
        return Judgement("still", reference)
    if count > cut_fraction * moved.size:
        return Judgement("scan", current)
    inside = np.zeros_like(moved)
    scale = THUMB_WIDTH / current.frame_size[0]
    for x, y, w, h in people:
        left, top = max(int(x * scale), 0), max(int(y * scale), 0)
        right, bottom = int(np.ceil((x + w) * scale)) + 1, int(np.ceil((y + h) * scale)) + 1
        inside[top : max(bottom, 0), left : max(right, 0)] = True
    moving = _patches(moved & ~inside)
    for left, top, right, bottom in moving:
        inside[top:bottom, left:right] = True
    if inside.sum() > cut_fraction * inside.size:
        return Judgement("scan", current)
    following = Thumbnail(np.where(inside, current.grey, reference.grey), current.frame_size)
    windows = tuple(
        (left / scale, top / scale, (right - left) / scale, (bottom - top) / scale)
        for left, top, right, bottom in moving
    )
    return Judgement("windows", following, windows)


def _patches(moved: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Thumbnail rectangles (left, top, right, bottom) around each patch of motion, grown by
    `_PATCH_GROWTH` of its size and two cells on every side (a head at the top of a moving
    body, a face whose edge moved), and rectangles that then overlap merged into one: each
    window costs the detector a fixed run besides its area, and a moving person's codec noise
    scatters patches around them (the room clip's substream as a camera agent published it:
    7.2 windows per windowed frame before, 2.6 merged, docs/tracks.md)."""
    import cv2  # OpenCV is loaded by the detector anyway

    count, _, stats, _ = cv2.connectedComponentsWithStats(moved.astype(np.uint8), connectivity=8)
    height, width = moved.shape
    rects: list[tuple[int, int, int, int]] = []
    for left, top, w, h, _area in stats[1:count]:
        grow_x, grow_y = int(w * _PATCH_GROWTH) + 2, int(h * _PATCH_GROWTH) + 2
        rect = (
            max(int(left) - grow_x, 0),
            max(int(top) - grow_y, 0),
            min(int(left + w) + grow_x, width),
            min(int(top + h) + grow_y, height),
        )
        # Merge into every rectangle it overlaps until it overlaps none (a union can reach
        # rectangles its parts did not).
        while overlapping := [r for r in rects if _overlap(r, rect)]:
            rects = [r for r in rects if not _overlap(r, rect)]
            rect = (
                min(rect[0], *(r[0] for r in overlapping)),
                min(rect[1], *(r[1] for r in overlapping)),
                max(rect[2], *(r[2] for r in overlapping)),
                max(rect[3], *(r[3] for r in overlapping)),
            )
        rects.append(rect)
    return rects


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two (left, top, right, bottom) rectangles share any area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def window(box: Box, margin: float, frame_size: tuple[int, int], below: float = 0.0) -> Box:
    """`box` grown by `margin` of its size on every side (and `below` more of its height
    downwards: a person's body), within the frame."""
    x, y, w, h = box
    left, top = max(x - margin * w, 0.0), max(y - margin * h, 0.0)
    right = min(x + w * (1 + margin), float(frame_size[0]))
    bottom = min(y + h * (1 + margin + below), float(frame_size[1]))
    return (left, top, max(right - left, 0.0), max(bottom - top, 0.0))


def _thumb_height(frame_size: tuple[int, int]) -> int:
    width, height = frame_size
    return max(1, round(height * THUMB_WIDTH / max(width, 1)))
