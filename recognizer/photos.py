"""Photos read for enrolment: measured from the header first, refused over the pixel limit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from facestream.schemas import FrameLimits, GalleryError, InvalidFrame
from facestream.schemas.images import image_size

__all__ = ["DEFAULT_MAX_PIXELS", "read_photo"]

DEFAULT_MAX_PIXELS: int = FrameLimits.model_fields["max_pixels"].default


def read_photo(photo: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """The photo as BGR; GalleryError (naming the file) if it is not an image, or its header
    declares more than `max_pixels`: that is judged before a pixel is decoded."""
    try:
        data = photo.read_bytes()
    except OSError as exc:
        raise GalleryError(f"{photo}: cannot read it ({exc.strerror})") from exc
    try:
        width, height = image_size(data)
    except InvalidFrame as exc:  # not an image at all, or a header cut short
        raise GalleryError(f"{photo}: not a readable image") from exc
    if width * height > max_pixels:
        raise GalleryError(
            f"{photo}: {width}x{height} = {width * height} pixels, over limits.max_pixels "
            f"({max_pixels}); scale it down first"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise GalleryError(f"{photo}: not a readable image")
    return np.asarray(image, np.uint8)
