"""Frame entries of `fs:{G}:frames`: the model, its limits, and (de)serialisation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidFrame
from .keys import GROUP_NAME_PATTERN

__all__ = [
    "CAMERA_ID_PATTERN",
    "MAX_TS_MS",
    "SCHEMA_VERSION",
    "Frame",
    "FrameLimits",
    "StreamFields",
    "jpeg_has_exif",
    "jpeg_header_size",
    "jpeg_size",
]

#: Version written in the `v` field of every entry we produce; readers reject any other.
SCHEMA_VERSION = 1
CAMERA_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
#: 9999-12-31T23:59:59.999Z: a capture time past it is garbage, and it keeps `ts` a float-safe int.
MAX_TS_MS = 253_402_300_799_999

#: What redis-py hands back for one stream entry (decode_responses=False).
StreamFields = Mapping[bytes, bytes]


class FrameLimits(BaseModel):
    """Caps a frame must respect, checked by the sender and again by the worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest encoded image."
    )
    max_pixels: int = Field(
        4096 * 4096,
        ge=64 * 64,
        le=16384 * 16384,
        description="Largest width × height, declared and as the JPEG header says: the cap on "
        "what one frame may decode into (3 bytes a pixel).",
    )
    min_side: int = Field(
        16, ge=1, le=1024, description="Smallest width or height: below it no face is findable."
    )
    max_faces: int = Field(
        32,
        ge=1,
        le=1000,
        description="Most faces published per frame; the best views are kept and the result "
        "says how many were left out.",
    )


class Frame(BaseModel):
    """One encoded camera frame, as carried on the frames stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    camera: Annotated[str, Field(pattern=CAMERA_ID_PATTERN)]
    group: Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
    seq: Annotated[int, Field(ge=0, lt=2**63)]
    ts: Annotated[int, Field(ge=0, le=MAX_TS_MS, description="Capture time, epoch milliseconds.")]
    codec: Literal["jpeg"] = "jpeg"
    w: Annotated[int, Field(gt=0, le=65535)]  # a JPEG header holds 16-bit sizes
    h: Annotated[int, Field(gt=0, le=65535)]
    img: Annotated[bytes, Field(min_length=1, repr=False)]

    def check_limits(self, limits: FrameLimits) -> None:
        """Raise InvalidFrame unless the image is a JPEG whose header agrees with `w`, `h`.

        Runs before anything decodes the image: a JPEG of a few KB can declare 32768x32768 in
        its header and decode into gigabytes, so its real size is read from the header first.
        """
        if len(self.img) > limits.max_bytes:
            raise InvalidFrame(
                f"image is {len(self.img)} bytes, over the limit of {limits.max_bytes}"
            )
        if self.w * self.h > limits.max_pixels:
            raise InvalidFrame(
                f"frame is {self.w}x{self.h} = {self.w * self.h} pixels, "
                f"over the limit of {limits.max_pixels}"
            )
        if min(self.w, self.h) < limits.min_side:
            raise InvalidFrame(
                f"frame is {self.w}x{self.h}, under the smallest side of {limits.min_side}"
            )
        width, height = jpeg_size(self.img)
        # Decoders apply the EXIF orientation, so a sender may declare the size turned by 90°.
        if (width, height) not in ((self.w, self.h), (self.h, self.w)):
            raise InvalidFrame(
                f"JPEG header says {width}x{height}, the entry declares {self.w}x{self.h}"
            )

    def to_fields(self) -> dict[str, bytes | str | int]:
        """Fields for XADD; the image travels as raw bytes (no base64)."""
        return {
            "v": self.v,
            "camera": self.camera,
            "group": self.group,
            "seq": self.seq,
            "ts": self.ts,
            "codec": self.codec,
            "w": self.w,
            "h": self.h,
            "img": self.img,
        }

    @classmethod
    def from_fields(cls, fields: StreamFields, limits: FrameLimits | None = None) -> Frame:
        """Parse and validate one stream entry, raising InvalidFrame with the reason."""
        version = fields.get(b"v")
        if version is None:
            raise InvalidFrame("missing field 'v' (schema version)")
        if version != str(SCHEMA_VERSION).encode():
            raise InvalidFrame(
                f"unsupported schema version {version.decode(errors='replace')!r}, "
                f"this worker reads version {SCHEMA_VERSION}"
            )
        try:
            data: dict[str, object] = {
                key.decode(): (value if key == b"img" else value.decode())
                for key, value in fields.items()
            }
            frame = cls.model_validate(data)
        except UnicodeDecodeError as exc:
            raise InvalidFrame(f"a text field is not UTF-8: {exc.reason}") from exc
        except ValidationError as exc:
            raise InvalidFrame(_describe(exc)) from exc
        if limits is not None:
            frame.check_limits(limits)
        return frame


def _describe(exc: ValidationError) -> str:
    """One line naming each bad field, without echoing image bytes or long field names."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "entry"
        if len(where) > 32 or not where.isprintable():
            where = repr(where[:32]) + "…"
        parts.append(f"{where}: {error['msg']}")
    return "invalid frame: " + "; ".join(parts[:8])


# Signatures of what cameras and people send instead of a JPEG, to say what it was.
_OTHER_FORMATS = {
    b"\x89PNG": "PNG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"RIFF": "RIFF (WebP?)",
}
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8, CC are not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM, RST0-7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's frame header (SOF), without decoding any pixel.

    Raises InvalidFrame if `data` is not a JPEG, or a truncated one: decoders fill a cut-off
    scan with grey and say nothing, so its end-of-image marker is looked for too.
    """
    if not data.startswith(b"\xff\xd8\xff"):
        kind = next((name for magic, name in _OTHER_FORMATS.items() if data.startswith(magic)), "")
        raise InvalidFrame(f"image is not a JPEG ({kind or 'starts with ' + data[:4].hex()})")
    if b"\xff\xd9" not in data[-64:]:  # some encoders pad after it
        raise InvalidFrame(f"truncated JPEG ({len(data)} bytes): no end-of-image marker")
    return jpeg_header_size(data)


def jpeg_header_size(data: bytes) -> tuple[int, int]:
    """`jpeg_size` without the end-of-image check: for files that may carry data after it
    (phone photos append previews and videos), read where only the size matters."""
    for marker, at, length in _segments(data):
        if marker in _SOF_MARKERS:
            if length < 8 or at + 9 > len(data):
                break
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            if not width or not height:
                raise InvalidFrame(f"JPEG header declares an empty image ({width}x{height})")
            return width, height
    raise InvalidFrame(f"truncated or corrupt JPEG ({len(data)} bytes): no frame header")


def jpeg_has_exif(data: bytes) -> bool:
    """Whether an Exif segment comes before the JPEG's frame header. It may say the picture is
    turned: OpenCV applies that, libjpeg-turbo (simplejpeg) does not, so such a frame is
    decoded by OpenCV wherever coordinates must agree. InvalidFrame if the header is corrupt."""
    for marker, at, _ in _segments(data):
        if marker == 0xE1 and data[at + 4 : at + 10] == b"Exif\x00\x00":
            return True
        if marker in _SOF_MARKERS:
            return False
    return False


def _segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, offset, length) of each header segment of a JPEG, up to its scan."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise InvalidFrame(f"corrupt JPEG: no marker at byte {at}")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        yield marker, at, length
        if length < 2:
            raise InvalidFrame(f"corrupt JPEG: segment of length {length} at byte {at}")
        at += 2 + length
