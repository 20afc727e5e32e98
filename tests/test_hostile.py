"""Hostile entries against a real worker and Redis: each bad one alone is dead-lettered.

Every test mixes good frames of enrolled people with the bad entries in the same batch and
checks both halves: the reason of each dead letter, and one right result per good frame.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from facestream.config import Settings
from facestream.recognizer import Delivery, FaceEngine, Gallery, Worker
from facestream.recognizer.quality import rank
from facestream.recognizer.solo import SoloLedger
from facestream.schemas import DeadLetter, Identity, Result, keys

from .helpers import FACES, enrol, make_worker, wait_for

Fields = dict[str, bytes | str | int]

OBAMA = (FACES / "test" / "obama1.jpg").read_bytes()  # 1480x832, obama
KIT_ROSE = (FACES / "test" / "kit_with_rose.jpg").read_bytes()  # 501x700, kit + rose


def _fields(img: bytes, w: int, h: int, **changes: bytes | str | int) -> Fields:
    fields: Fields = {
        "v": 1, "camera": "cam-1", "group": "g1", "seq": 0, "ts": 1_700_000_000_000,
        "codec": "jpeg", "w": w, "h": h, "img": img,
    }  # fmt: skip
    fields.update(changes)
    return fields


def _jpeg(width: int, height: int) -> bytes:
    image = np.full((height, width, 3), 128, np.uint8)
    return bytes(cv2.imencode(".jpg", image)[1])


def _with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same few KB, but a frame header that claims `width`x`height` (a decompression bomb)."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 9 :]


def _broken_huffman_table(jpeg: bytes) -> bytes:
    """A JPEG whose header parses but that no decoder accepts."""
    at = jpeg.index(b"\xff\xc4") + 5
    return jpeg[:at] + b"\xff" * 20 + jpeg[at + 20 :]


def _hostile() -> list[tuple[Fields, str]]:
    """Bad entries and the reason each must be dead-lettered with."""
    small = _jpeg(640, 360)
    return [
        (_fields(_with_sof_size(small, 32768, 32768), 640, 360),
         "JPEG header says 32768x32768, the entry declares 640x360"),
        (_fields(small, 32768, 32768),
         "frame is 32768x32768 = 1073741824 pixels, over the limit of 16777216"),
        (_fields(_with_sof_size(small, 20000, 20000), 640, 360),
         "JPEG header says 20000x20000, the entry declares 640x360"),
        (_fields(small, 320, 180), "JPEG header says 640x360, the entry declares 320x180"),
        (_fields(bytes(cv2.imencode(".png", np.zeros((360, 640, 3), np.uint8))[1]), 640, 360),
         "image is not a JPEG (PNG)"),
        (_fields(bytes(cv2.imencode(".tiff", np.zeros((360, 640, 3), np.uint8))[1]), 640, 360),
         "image is not a JPEG (TIFF)"),
        (_fields(OBAMA[: len(OBAMA) // 2], 1480, 832),
         f"truncated JPEG ({len(OBAMA) // 2} bytes): no end-of-image marker"),
        (_fields(small[:2] + b"\xff\xe0\x00\x01" + small[6:], 640, 360),
         "corrupt JPEG: segment of length 1 at byte 2"),
        (_fields(_broken_huffman_table(small), 640, 360),
         f"image data ({len(small)} bytes) is not a decodable JPEG"),
        (_fields(_jpeg(1, 1), 1, 1), "frame is 1x1, under the smallest side of 16"),
        (_fields(b"", 640, 360), "invalid frame: img: Data should have at least 1 byte"),
        ({k: v for k, v in _fields(small, 640, 360).items() if k != "ts"},
         "invalid frame: ts: Field required"),
        (_fields(small, 640, 360, extra="x"),
         "invalid frame: extra: Extra inputs are not permitted"),
        (_fields(small, 640, 360, **{"f" * 5000: "x"}),
         "invalid frame: 'ffffffffffffffffffffffffffffffff'…: Extra inputs are not permitted"),
        (_fields(small, 640, 360, ts="9" * 400),
         "invalid frame: ts: Input should be less than or equal to 253402300799999"),
        (_fields(small, 640, 360, v=2),
         "unsupported schema version '2', this worker reads version 1"),
        (_fields(small, 640, 360, group="g1\n"),
         "invalid frame: group: String should match pattern"),
        (_fields(small, 640, 360, group="g2"), "entry names group 'g2' but was sent to group 'g1'"),
        (_fields(small, 640, 360, camera="c\x00\n" + "x" * 10_000),
         "invalid frame: camera: String should match pattern"),
        (_fields(small, 640, 360, camera=b"\xff\xfe"), "a text field is not UTF-8"),
    ]  # fmt: skip


def _outcomes(client: redis.Redis, group: str = "g1") -> tuple[list[Result], list[DeadLetter]]:
    results = [Result.from_fields(f) for _, f in client.xrange(keys.results(group))]
    letters = [DeadLetter.from_fields(f) for _, f in client.xrange(keys.dead(group))]
    return results, letters


def _add(client: redis.Redis, fields: Fields, group: str = "g1") -> str:
    return client.xadd(keys.frames(group), fields).decode()  # type: ignore[arg-type, union-attr]


def _steps_until_done(worker: Worker, client: redis.Redis, expected: int) -> None:
    def done() -> bool:
        worker.step()
        return client.xlen(keys.results("g1")) + client.xlen(keys.dead("g1")) >= expected

    wait_for(done, timeout_s=120, what=f"{expected} frames finished")


def test_hostile_entries_are_dead_lettered_and_good_frames_answered_once(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    enrol(engine, client)
    worker = make_worker(client, engine, settings)
    worker.step()  # creates the consumer group, so every entry below comes in one read
    good = {
        _add(client, _fields(OBAMA, 1480, 832, seq=1)): ["obama"],
        _add(client, _fields(KIT_ROSE, 501, 700, seq=2)): ["kit_harington", "rose_leslie"],
    }
    bad: dict[str, str] = {}
    for index, (fields, reason) in enumerate(_hostile()):
        bad[_add(client, fields)] = reason
        if index % 7 == 0:  # good frames between the bad ones, one a repeat (cached)
            good[_add(client, _fields(OBAMA, 1480, 832, seq=3 + index))] = ["obama"]
    assert len(good) + len(bad) <= settings.worker.batch_size  # one batch
    _steps_until_done(worker, client, len(good) + len(bad))

    results, letters = _outcomes(client)
    assert Counter(r.frame_id for r in results) == Counter(good.keys())  # exactly once each
    for result in results:
        assert sorted(result.identities) == good[result.frame_id], result
    assert sorted(letter.frame_id for letter in letters) == sorted(bad)
    for letter in letters:
        assert bad[letter.frame_id] in letter.reason, (bad[letter.frame_id], letter.reason)
        assert len(letter.reason) <= 300 and letter.reason.isprintable()
        assert len(letter.camera) <= 64 and letter.camera.isprintable()
    assert client.xpending(keys.frames("g1"), keys.RECOGNIZERS)["pending"] == 0


def test_more_faces_than_the_limit_keeps_the_best_view_and_says_so(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    limits = settings.limits.model_copy(update={"max_faces": 1})
    worker = make_worker(client, engine, settings.model_copy(update={"limits": limits}))
    worker.step()
    photo = FACES / "test" / "obama_and_biden.jpg"
    image = cv2.imread(str(photo))
    detections, _ = engine.embed_faces(np.asarray(image, np.uint8))
    assert len(detections) == 3
    best = max(detections, key=lambda d: rank(d.landmarks, d.score, settings.match.quality))
    embedded = engine.embedder.faces
    _add(client, _fields(photo.read_bytes(), image.shape[1], image.shape[0]))
    _add(client, _fields(photo.read_bytes(), image.shape[1], image.shape[0], seq=1))
    _steps_until_done(worker, client, 2)
    assert engine.embedder.faces == embedded + 1  # the faces left out were never embedded
    results, letters = _outcomes(client)
    assert not letters and [r.cached for r in results] == [False, True]
    for result in results:  # from the model, then from the cache: the same
        assert result.faces_dropped == 2 and len(result.faces) == 1
        assert result.faces[0].box[:2] == pytest.approx(
            (float(best.box[0]), float(best.box[1])), abs=0.1
        )


def _serving_after_one_photo(engine: FaceEngine, client: redis.Redis, settings: Settings) -> Worker:
    """A worker that has answered one photo of an enrolled person (cache filled, gallery in)."""
    enrol(engine, client, ["obama"])
    worker = make_worker(client, engine, settings)
    worker.step()
    _add(client, _fields(OBAMA, 1480, 832))
    _steps_until_done(worker, client, 1)
    return worker


def test_a_malformed_cache_value_is_recognised_again(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    worker = _serving_after_one_photo(engine, client, settings)
    (first,) = _outcomes(client)[0]
    cache_key = keys.cache("g1", first.hash)
    client.set(cache_key, b'{"model": "' + b"x" * 50 + b'", "faces": 7}')
    _add(client, _fields(OBAMA, 1480, 832, seq=1))
    _steps_until_done(worker, client, 2)
    results, letters = _outcomes(client)
    assert not letters and results[1].identities == ["obama"] and not results[1].cached
    assert b"embeddings" in client.get(cache_key)  # type: ignore[operator]  # rewritten


def test_a_gallery_of_the_wrong_embedding_size_is_refused_and_serving_goes_on(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    worker = _serving_after_one_photo(engine, client, settings)
    imported = Identity(
        name="mallory", model=engine.model_id, embeddings=[[0.5] * 64], enrolled_at=1
    )
    Gallery(client).enroll(imported)
    _add(client, _fields(OBAMA, 1480, 832, seq=1))
    _add(client, _fields(KIT_ROSE, 501, 700, seq=2))
    _steps_until_done(worker, client, 3)
    results, letters = _outcomes(client)
    assert not letters
    assert [r.identities for r in results] == [["obama"], ["obama"], []]
    assert worker.matcher.names == ["obama"]


def test_delivery_counts_of_ids_9_and_10_reach_max_deliveries(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> None:
    """Ids compare as numbers: "5-10" sorts before "5-9" as text, and was counted as 1 (so it
    would not be tried alone, and its failed solo attempt would not be seen)."""
    strict = settings.worker.model_copy(update={"claim_idle_ms": 100, "max_deliveries": 1})
    worker = make_worker(client, engine, settings.model_copy(update={"worker": strict}))
    worker.step()  # creates the consumer group
    stream = keys.frames("g1")
    ids = [f"5-{n}" for n in range(1, 11)]
    for seq, entry_id in enumerate(ids):
        client.xadd(stream, _fields(OBAMA, 1480, 832, seq=seq), id=entry_id)  # type: ignore[arg-type]
    # One consumer takes them and dies; a second tries each alone and dies: deliveries 1 and 2.
    client.xreadgroup(keys.RECOGNIZERS, "dead-1", {stream: ">"})
    client.xclaim(stream, keys.RECOGNIZERS, "dead-2", 0, ids)
    dead = SoloLedger(client, "dead-2")
    for entry_id in ids:
        dead.begin(Delivery("g1", entry_id, None, 2))
    _steps_until_done(worker, client, len(ids))
    results, letters = _outcomes(client)
    assert not results
    assert sorted((letter.frame_id, letter.deliveries) for letter in letters) == sorted(
        (entry_id, 3) for entry_id in ids
    )
    assert all("worker died without a result 1x" in letter.reason for letter in letters)


# -- random entries against the running loop -------------------------------------------------

_NAMES = ["v", "camera", "group", "seq", "ts", "codec", "w", "h", "img"]
_SMALL = _jpeg(64, 48)
_VALUES = st.one_of(
    st.binary(max_size=64),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    st.sampled_from([b"1", b"g1", b"jpeg", b"cam", b"48", b"64", _SMALL, OBAMA[:3000]]),
)
_ENTRIES = st.one_of(
    st.dictionaries(st.sampled_from(_NAMES) | st.text(min_size=1, max_size=8), _VALUES,
                    min_size=1, max_size=10),
    st.fixed_dictionaries(
        {}, optional={name: _VALUES for name in _NAMES}
    ).filter(bool),
    st.builds(lambda seq: _fields(_SMALL, 64, 48, seq=seq), st.integers(0, 1000)),
)  # fmt: skip


@pytest.fixture()
def running_worker(
    engine: FaceEngine, client: redis.Redis, settings: Settings
) -> Iterator[threading.Thread]:
    worker = make_worker(client, engine, settings)
    worker.step()  # the consumer group exists before the first entry
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(30)


@hypothesis_settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(_ENTRIES, min_size=1, max_size=4))
def test_random_entries_never_kill_the_worker_and_each_ends_once(
    running_worker: threading.Thread, client: redis.Redis, batch: list[Fields]
) -> None:
    sent = [client.xadd(keys.frames("g1"), fields).decode() for fields in batch]  # type: ignore[arg-type, union-attr]

    def finished() -> bool:
        results, letters = _outcomes(client)
        done = {r.frame_id for r in results} | {letter.frame_id for letter in letters}
        return done >= set(sent)

    wait_for(finished, timeout_s=60, what="every entry answered or dead-lettered")
    assert running_worker.is_alive()
    results, letters = _outcomes(client)
    everything = Counter([r.frame_id for r in results] + [d.frame_id for d in letters])
    assert max(everything.values()) == 1, everything.most_common(3)
