"""Frame entries of `fs:{G}:frames`: the model, its limits, and (de)serialisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidFrame
from .keys import GROUP_NAME_PATTERN

__all__ = ["CAMERA_ID_PATTERN", "SCHEMA_VERSION", "Frame", "FrameLimits", "StreamFields"]

#: Version written in the `v` field of every entry we produce; readers reject any other.
SCHEMA_VERSION = 1
CAMERA_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"

#: What redis-py hands back for one stream entry (decode_responses=False).
StreamFields = Mapping[bytes, bytes]


class FrameLimits(BaseModel):
    """Caps a frame must respect, checked by the sender and again by the worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest encoded image."
    )
    max_pixels: int = Field(
        4096 * 4096, ge=64 * 64, le=16384 * 16384, description="Largest width × height."
    )


class Frame(BaseModel):
    """One encoded camera frame, as carried on the frames stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    camera: Annotated[str, Field(pattern=CAMERA_ID_PATTERN)]
    group: Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
    seq: Annotated[int, Field(ge=0)]
    ts: Annotated[int, Field(ge=0, description="Capture time, epoch milliseconds.")]
    codec: Literal["jpeg"] = "jpeg"
    w: Annotated[int, Field(gt=0)]
    h: Annotated[int, Field(gt=0)]
    img: Annotated[bytes, Field(min_length=1, repr=False)]

    def check_limits(self, limits: FrameLimits) -> None:
        """Raise InvalidFrame if the frame is larger than `limits` allow."""
        if len(self.img) > limits.max_bytes:
            raise InvalidFrame(
                f"image is {len(self.img)} bytes, over the limit of {limits.max_bytes}"
            )
        if self.w * self.h > limits.max_pixels:
            raise InvalidFrame(
                f"frame is {self.w}x{self.h} = {self.w * self.h} pixels, "
                f"over the limit of {limits.max_pixels}"
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
    """One line naming each bad field, without echoing image bytes."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "entry"
        parts.append(f"{where}: {error['msg']}")
    return "invalid frame: " + "; ".join(parts)
