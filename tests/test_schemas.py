"""The wire contract: frames, results and dead letters survive the trip and bad ones are named."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facestream.schemas import (
    DeadLetter,
    Face,
    Frame,
    FrameLimits,
    InvalidFrame,
    InvalidGroup,
    Result,
    jpeg_size,
    keys,
)


def _frame(**changes: object) -> Frame:
    values: dict[str, object] = dict(
        camera="c12", group="east", seq=7, ts=1_700_000_000_000, w=640, h=360, img=b"\xff\xd8jpeg"
    )
    values.update(changes)
    return Frame.model_validate(values)


def _wire(frame: Frame) -> dict[bytes, bytes]:
    """What redis-py hands back after XADD of `frame.to_fields()`."""
    return {
        k.encode(): v if isinstance(v, bytes) else str(v).encode()
        for k, v in frame.to_fields().items()
    }


def test_frame_round_trip() -> None:
    frame = _frame()
    assert Frame.from_fields(_wire(frame)) == frame


def test_wrong_schema_version_is_named() -> None:
    fields = _wire(_frame()) | {b"v": b"2"}
    with pytest.raises(
        InvalidFrame, match=r"^unsupported schema version '2', this worker reads version 1$"
    ):
        Frame.from_fields(fields)


def test_missing_field_is_named() -> None:
    fields = _wire(_frame())
    del fields[b"camera"]
    with pytest.raises(InvalidFrame, match=r"^invalid frame: camera: Field required$"):
        Frame.from_fields(fields)


def test_oversized_frame_is_rejected() -> None:
    limits = FrameLimits(max_bytes=1024, max_pixels=64 * 64)
    with pytest.raises(InvalidFrame, match=r"^image is 2000 bytes, over the limit of 1024$"):
        Frame.from_fields(_wire(_frame(img=b"x" * 2000, w=10, h=10)), limits)
    with pytest.raises(InvalidFrame, match=r"over the limit of 4096$"):
        Frame.from_fields(_wire(_frame()), limits)


def test_result_round_trip_keeps_faces() -> None:
    face = Face(
        box=(1.0, 2.0, 30.0, 40.0),
        landmarks=((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)),
        score=0.93,
        identity="obama",
        similarity=0.71,
    )
    result = Result(
        frame_id="1-0", camera="c", group="g", seq=1, ts=5, hash="ab", cached=True,
        faces=[face], faces_dropped=2, model="m", latency_ms={"detect": 1.5},
    )  # fmt: skip
    wire = {
        k.encode(): v if isinstance(v, bytes) else str(v).encode()
        for k, v in result.to_fields().items()
    }
    parsed = Result.from_fields(wire)
    assert parsed == result
    assert parsed.identities == ["obama"]


def test_dead_letter_round_trip() -> None:
    letter = DeadLetter(
        frame_id="1-0", group="g", reason="bad", deliveries=3, camera="c", image_bytes=9
    )
    wire = {k.encode(): str(v).encode() for k, v in letter.to_fields().items()}
    assert DeadLetter.from_fields(wire) == letter


def test_keys_share_the_group_hash_tag() -> None:
    assert keys.frames("east") == "fs:{east}:frames"
    assert keys.cache("east", "ab12") == "fs:{east}:cache:ab12"
    assert keys.group_of(b"fs:{east}:results") == "east"
    with pytest.raises(ValueError, match=r"invalid camera group 'a}b'"):
        keys.frames("a}b")


def _jpeg(width: int, height: int) -> bytes:
    return bytes(cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))[1])


def test_jpeg_size_reads_the_frame_header_without_decoding() -> None:
    assert jpeg_size(_jpeg(640, 360)) == (640, 360)
    progressive = cv2.imencode(
        ".jpg", np.zeros((48, 64, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1]
    assert jpeg_size(bytes(progressive)) == (64, 48)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, r"^image is not a JPEG \(PNG\)$"),
        (b"II*\x00" + b"\x00" * 20, r"^image is not a JPEG \(TIFF\)$"),
        (bytes(range(16)), r"^image is not a JPEG \(starts with 00010203\)$"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", r"^truncated JPEG \(10 bytes\): no end-of-image marker$"),
        (b"\xff\xd8\xff\xda\x00\x02\xff\xd9", r"^truncated or corrupt JPEG \(8 bytes\): no frame"),
        (
            b"\xff\xd8\xff\xe0\x00\x04\x00\x00" + b"\x00" * 4 + b"\xff\xd9",
            r"^corrupt JPEG: no marker at byte 8$",
        ),
    ],
)
def test_what_is_not_a_whole_jpeg_is_named(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidFrame, match=reason):
        jpeg_size(data)


def test_the_header_size_must_be_the_declared_one() -> None:
    small = _jpeg(640, 360)
    at = small.index(b"\xff\xc0")
    bomb = small[: at + 5] + (32768).to_bytes(2, "big") * 2 + small[at + 9 :]
    limits = FrameLimits()
    with pytest.raises(
        InvalidFrame, match=r"^JPEG header says 32768x32768, the entry declares 640x360$"
    ):
        _frame(img=bomb).check_limits(limits)
    _frame(img=small).check_limits(limits)
    _frame(img=small, w=360, h=640).check_limits(limits)  # EXIF-rotated: the same pixels
    with pytest.raises(InvalidFrame, match=r"^frame is 8x8, under the smallest side of 16$"):
        _frame(img=_jpeg(8, 8), w=8, h=8).check_limits(limits)


def test_numbers_past_their_range_are_refused() -> None:
    with pytest.raises(InvalidFrame, match=r"^invalid frame: ts: Input should be less than"):
        Frame.from_fields(_wire(_frame()) | {b"ts": b"9" * 400})
    with pytest.raises(InvalidFrame, match=r"^invalid frame: w: Input should be less than"):
        Frame.from_fields(_wire(_frame()) | {b"w": b"65536"})


def test_dead_letters_keep_hostile_text_short_and_printable() -> None:
    letter = DeadLetter(
        frame_id="1-0", group="g", reason="x\n" * 1000, deliveries=1, camera="\x1b[31m" * 50
    )
    assert len(letter.reason) == 300 and letter.reason.endswith("…")
    assert letter.reason.isprintable() and letter.camera.isprintable()
    assert len(letter.camera) == 64


def test_a_group_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidGroup, match=r"^invalid camera group 'east\\n'"):
        keys.frames("east\n")
