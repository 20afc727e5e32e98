"""The wire contract: frames, results and dead letters survive the trip and bad ones are named."""

from __future__ import annotations

import pytest

from facestream.schemas import (
    DeadLetter,
    Face,
    Frame,
    FrameLimits,
    InvalidFrame,
    Result,
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
        faces=[face], model="m", latency_ms={"detect": 1.5},
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
