"""Detection in windows around tracked faces, at the scale a full-frame scan would see them.

A window that held a face on the camera's last frame and holds none now does not mean the face
left: the window's narrower context can miss a marginal face the full frame would show. Then
the frame is scanned in full, so windows never lose a face a full scan finds.

A full scan letterboxes the frame to `detect_size`; a window is cut from the frame, resized by
the same factor and run through YuNet at its own (padded) size, so a face is the same number of
pixels to the network either way and costs only its window's area. Faces found in two
overlapping windows are one face: the higher-scoring detection stays.

On a frame large enough to be tiled, a small face is one only the tiles (at the frame's own
resolution) find reliably: its window is searched at that resolution too, so the face is
followed from frame to frame instead of only on the frames due for tiles. And a small face the
letterbox finds on such a frame between its tiled ones is measured again at the frame's own
resolution (`refine_small`): scaled up from the letterbox, its landmarks put the eyes apart by
up to a third more than they are (benchmarks/crowds.py), which let faces past the quality
gate's `min_iod` that the tiles and the windows measure under it, and aligned them from
imprecise points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .detector import Detection, YuNetDetector
from .motion import Box, window
from .tracks import iou
from .views import FrameView

__all__ = [
    "SMALL_FACE_PX",
    "SMALL_PATCH_PX",
    "Windows",
    "detect_regions",
    "refine_small",
    "scan_scale",
]

_SAME_FACE_IOU = 0.5
#: A face under this many pixels high at the full scan's scale is looked for at the frame's own
#: resolution: in 1080p crowds (benchmarks/crowds.py) the letterbox found 80% of faces 13–16 px
#: high at its scale, 95% of those 16–20 px high, and every face from 25 px up.
SMALL_FACE_PX = 24
#: A patch of motion under this many pixels on its longer side at the scan's scale holds no
#: face but one under `SMALL_FACE_PX` (with its head and shoulders, a face is about a quarter
#: of its patch): it too is searched at the frame's own resolution, so a small face entering
#: is found where the letterbox would find it, not only by the next tiles.
SMALL_PATCH_PX = 4 * SMALL_FACE_PX
# Face sizes of context around a small face measured again at full resolution: its box from
# the letterbox may be a tenth off, and the network needs the whole head in view.
_REFINE_MARGIN = 0.5


@dataclass(frozen=True)
class Windows:
    """Where to detect in a frame (frame pixels); the first `expected` each held a face on
    the camera's last frame."""

    boxes: Sequence[Box]
    expected: int = 0
    # Per box (or none: all at the scan's scale): searched at the frame's own resolution.
    full_res: Sequence[bool] = ()

    def explained(self, found: Sequence[Detection]) -> bool:
        """Whether each window that held a face holds one again (its centre inside)."""
        return all(
            any(_centre_in(d.box, window) for d in found) for window in self.boxes[: self.expected]
        )


def _centre_in(box: Box, window: Box) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return window[0] <= cx <= window[0] + window[2] and window[1] <= cy <= window[1] + window[3]


def scan_scale(frame_size: tuple[int, int], detect_size: int | None) -> float:
    """Network pixels per frame pixel of a full-frame scan."""
    return detect_size / max(frame_size) if detect_size else 1.0


def detect_regions(
    native: YuNetDetector,
    view: FrameView,
    windows: Sequence[Box],
    scale: float,
    full_res: Sequence[bool] = (),
) -> list[Detection]:
    """Faces in `windows` (frame pixels) of `view`, in frame pixels, best score first.

    `native` runs at the input's own size; `scale`: network pixels per frame pixel, except in
    the windows `full_res` flags, searched at the frame's own resolution (small faces).
    """
    found: list[Detection] = []
    for index, box in enumerate(windows):
        found.extend(_search(native, view, box, scale, index < len(full_res) and full_res[index]))
    kept: list[Detection] = []  # a face in two overlapping windows is one face
    for detection in sorted(found, key=lambda d: -d.score):
        if all(iou(detection.box, other.box) < _SAME_FACE_IOU for other in kept):
            kept.append(detection)
    return kept


def refine_small(
    native: YuNetDetector, view: FrameView, found: Sequence[Detection], scale: float
) -> list[Detection]:
    """`found` (a letterboxed scan's faces, frame pixels) with each face under `SMALL_FACE_PX`
    at the scan's `scale` replaced by its detection at the frame's own resolution, where a
    window around it finds it (overlapping by `_SAME_FACE_IOU`); the others as they are."""
    refined = []
    for detection in found:
        if detection.box[3] * scale < SMALL_FACE_PX:
            around = window(detection.box, _REFINE_MARGIN, view.frame_size)
            same = [
                d
                for d in _search(native, view, around, scale, True)
                if iou(d.box, detection.box) >= _SAME_FACE_IOU
            ]
            detection = max(same, key=lambda d: d.score, default=detection)
        refined.append(detection)
    return refined


def _search(
    native: YuNetDetector, view: FrameView, window: Box, scale: float, fine: bool
) -> list[Detection]:
    """Faces wholly inside one window (frame pixels) of `view`; `fine`: at full resolution."""
    x, y, w, h = window
    # The image cut from, its pixels per frame pixel, and network pixels per its pixel.
    image, pixels = (view.full(), 1.0) if fine else (view.detect, view.scale)
    factor = (1.0 if fine else scale) / pixels
    height, width = image.shape[:2]
    left, top = max(int(x * pixels), 0), max(int(y * pixels), 0)
    right = min(int(np.ceil((x + w) * pixels)), width)
    bottom = min(int(np.ceil((y + h) * pixels)), height)
    if right - left < 8 or bottom - top < 8:
        return []
    crop = image[top:bottom, left:right]
    if factor != 1.0:
        interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
        crop = np.asarray(
            cv2.resize(crop, None, fx=factor, fy=factor, interpolation=interpolation), np.uint8
        )
    shift = np.array([left, top], dtype=np.float32)
    edges = (left > 0, top > 0, right < width, bottom < height)  # cut edges, not the frame's
    found = []
    for d in native.detect(np.ascontiguousarray(crop)):
        if _cut(d.box, crop.shape[1], crop.shape[0], edges):
            continue  # a face cut by the window is found whole in its own window
        marks = (d.landmarks / factor + shift) / pixels
        bx, by, bw, bh = d.box
        box = (
            (bx / factor + left) / pixels,
            (by / factor + top) / pixels,
            bw / factor / pixels,
            bh / factor / pixels,
        )
        found.append(Detection(box=box, landmarks=marks.astype(np.float32), score=d.score))
    return found


def _cut(box: Box, width: int, height: int, edges: tuple[bool, bool, bool, bool]) -> bool:
    """Whether a detection touches an edge where the window cut the frame."""
    x, y, w, h = box
    touches = (x <= 1, y <= 1, x + w >= width - 1, y + h >= height - 1)
    return any(t and e for t, e in zip(touches, edges, strict=True))
