"""Recognition on the labelled photos: every labelled person named, no wrong or false names."""

from __future__ import annotations

import cv2
import redis

from facestream.recognizer import FaceEngine, Gallery, Matcher

from .helpers import FACES, IDENTITIES, LABELS, enrol


def _names(engine: FaceEngine, matcher: Matcher, relative: str) -> list[str | None]:
    (recognition,) = engine.recognise([cv2.imread(str(FACES / relative))], matcher)
    return [face.identity for face in recognition.faces]


def test_every_labelled_identity_is_recognised(engine: FaceEngine, client: redis.Redis) -> None:
    enrol(engine, client)
    matcher = Gallery(client).matcher(engine.model_id, 0.363, 0.05)
    for relative, expected in LABELS.items():
        names = _names(engine, matcher, relative)
        named = {n for n in names if n is not None}
        assert named <= set(expected), f"{relative}: wrong name in {names}"
        if "partial" not in relative:  # partial faces may stay unknown, never wrong
            assert set(expected) <= named, f"{relative}: expected {expected}, got {names}"


def test_a_person_not_enrolled_stays_unknown(engine: FaceEngine, client: redis.Redis) -> None:
    for left_out in IDENTITIES:
        client.flushall()
        enrol(engine, client, [n for n in IDENTITIES if n != left_out])
        matcher = Gallery(client).matcher(engine.model_id, 0.363, 0.05)
        for relative, expected in LABELS.items():
            names = _names(engine, matcher, relative)
            assert left_out not in names
            if expected == [left_out]:
                assert names.count(None) >= 1, f"{relative} without {left_out}: {names}"
                assert set(names) == {None}, f"{relative}: {left_out} taken for {names}"
