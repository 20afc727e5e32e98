"""Width and height of an image from its header, without decoding a pixel.

A PNG of one megabyte can declare 20000x20000 and decode into 1.2 GB, and OpenCV has no call
that reads only the size; so every photo taken in (enrolment from the CLI and the page, replay
of a folder) is measured here first and refused or scaled before anything decodes it. Only the
formats `IMAGE_SUFFIXES` names are read; anything else is refused.
"""

from __future__ import annotations

from typing import Literal

from .errors import InvalidFrame
from .frames import jpeg_header_size

__all__ = ["image_size"]

Order = Literal["little", "big"]
_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
_TIFF_SHORT, _TIFF_LONG = 3, 4


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) that `data`'s header declares; InvalidFrame if it is none of JPEG, PNG,
    GIF, BMP, WebP or TIFF, or its header is cut short."""
    try:
        size = _size(data)
    except IndexError as exc:  # a header cut short
        raise InvalidFrame(f"truncated image header ({len(data)} bytes)") from exc
    if size is None:
        raise InvalidFrame(
            f"not an image this can measure (JPEG, PNG, GIF, BMP, WebP, TIFF): starts with "
            f"{data[:4].hex() or 'nothing'}"
        )
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidFrame(f"image header declares an empty image ({width}x{height})")
    return size


def _size(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\xff\xd8\xff"):
        return jpeg_header_size(data)
    if data.startswith(_PNG):
        if data[12:16] != b"IHDR":
            raise InvalidFrame("corrupt PNG: the first chunk is not IHDR")
        return _be(data, 16, 4), _be(data, 20, 4)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _le(data, 6, 2), _le(data, 8, 2)
    if data.startswith(b"BM"):
        if _le(data, 14, 4) == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
            return _le(data, 18, 2), _le(data, 20, 2)
        height = _int(data, 22, 4, "little", signed=True)  # negative: stored top-down
        return _int(data, 18, 4, "little", signed=True), abs(height)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    return None


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sides minus one
        return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
    if chunk == b"VP8L":  # lossless: 14-bit sides minus one after the 0x2f signature
        bits = _le(data, 21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
    raise InvalidFrame(f"corrupt WebP: unknown chunk {chunk!r}")


def _tiff(data: bytes) -> tuple[int, int]:
    """ImageWidth and ImageLength of the first image file directory."""
    order: Order = "little" if data[:2] == b"II" else "big"
    ifd = _int(data, 4, 4, order)
    sides: dict[int, int] = {}
    for entry in range(_int(data, ifd, 2, order)):
        at = ifd + 2 + 12 * entry
        tag, kind = _int(data, at, 2, order), _int(data, at + 2, 2, order)
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT) and kind in (_TIFF_SHORT, _TIFF_LONG):
            sides[tag] = _int(data, at + 8, 2 if kind == _TIFF_SHORT else 4, order)
    if _TIFF_WIDTH not in sides or _TIFF_HEIGHT not in sides:
        raise InvalidFrame("corrupt TIFF: no image width and length in its first directory")
    return sides[_TIFF_WIDTH], sides[_TIFF_HEIGHT]


def _le(data: bytes, at: int, size: int) -> int:
    return _int(data, at, size, "little")


def _be(data: bytes, at: int, size: int) -> int:
    return _int(data, at, size, "big")


def _int(data: bytes, at: int, size: int, order: Order, signed: bool = False) -> int:
    if at + size > len(data):
        raise IndexError(at)
    return int.from_bytes(data[at : at + size], order, signed=signed)
