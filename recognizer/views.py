"""A frame decoded as little as its use needs: reduced for detection, full only for faces.

The detector letterboxes to `detect_size` anyway, so a 1080p frame decoded at 1/2 by
libjpeg-turbo's DCT scaling (simplejpeg) loses nothing it would see and costs a third of a
full decode. The full-resolution image is decoded only when a face is aligned for SFace or
cropped for a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simplejpeg
from numpy.typing import NDArray

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
        then runs at native size); ValueError if unreadable."""
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

    @property
    def decoded_full(self) -> bool:
        return self._full is not None

    def full(self) -> NDArray[np.uint8]:
        """The frame at full resolution (decoded on first use)."""
        if self._full is None:
            self._full = np.asarray(simplejpeg.decode_jpeg(self.jpeg, colorspace="BGR"), np.uint8)
        return self._full
