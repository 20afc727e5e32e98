"""A frame decoded as little as its use needs: reduced for detection, full only for faces.

The detector letterboxes to `detect_size` anyway, so a 1080p frame decoded at 1/2 by
libjpeg-turbo's DCT scaling (simplejpeg) loses nothing it would see; but the entropy decode is
not scaled, and at 1080p it cost about as much as a full decode (8.0 against 8.2 ms), so
`tracks.reduced_decode` is off by default (docs/tracks.md). The full-resolution image is
decoded only when a face is aligned for SFace or cropped for a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simplejpeg
from numpy.typing import NDArray

from facestream.schemas.frames import jpeg_has_exif

__all__ = ["FrameView"]


@dataclass
class FrameView:
    """One frame: `detect` (this many detect pixels per full pixel: `scale`) and `full()`."""

    detect: NDArray[np.uint8]
    scale: float = 1.0
    jpeg: bytes = b""
    _full: NDArray[np.uint8] | None = field(default=None, repr=False)

    @classmethod
    def whole(cls, image: NDArray[np.uint8]) -> FrameView:
        """A frame already decoded at full size."""
        return cls(image, 1.0, b"", image)

    @classmethod
    def reduced(
        cls, jpeg: bytes, frame_size: tuple[int, int], detect_size: int | None
    ) -> FrameView:
        """The JPEG decoded at the smallest DCT scale whose longer side is still `detect_size`
        or more (full size when the frame is not larger, or with no `detect_size`: the detector
        then runs at native size); ValueError if unreadable, or if it carries Exif (libjpeg-turbo
        would not turn it as its orientation says: OpenCV must decode it)."""
        if jpeg_has_exif(jpeg):
            raise ValueError("an Exif JPEG: OpenCV applies its orientation")
        width, height = frame_size
        longest = max(width, height)
        detect_size = detect_size or longest
        image = simplejpeg.decode_jpeg(
            jpeg,
            colorspace="BGR",
            min_width=-(-detect_size * width // longest),
            min_height=-(-detect_size * height // longest),
        )
        image = np.asarray(image, dtype=np.uint8)
        scale = image.shape[1] / width
        return cls(image, scale, jpeg, image if scale == 1.0 else None)

    @property
    def frame_size(self) -> tuple[int, int]:
        """Width and height of the full frame."""
        height, width = self.detect.shape[:2]
        return round(width / self.scale), round(height / self.scale)

    def full(self) -> NDArray[np.uint8]:
        """The frame at full resolution (decoded on first use)."""
        if self._full is None:
            self._full = np.asarray(simplejpeg.decode_jpeg(self.jpeg, colorspace="BGR"), np.uint8)
        return self._full
