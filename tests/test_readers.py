"""One malformed entry never jams a reader: hypothesis writes entries to a real Redis, and every
reader (tails, subscribers, the page's feed, dead letters, status) skips and counts what it
cannot parse, hands out only what it can pass on as JSON, and goes on to the next entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import orjson
import redis
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from facestream.client import (
    EventSubscriber,
    ResultSubscriber,
    TailStats,
    describe_event,
    describe_result,
    tail_events,
    tail_results,
)
from facestream.dead_letters import DeadLetters
from facestream.schemas import CameraHealth, DeadLetter, Event, Heartbeat, Result, keys
from facestream.status import collect_status
from facestream.web import WebSettings
from facestream.web.metrics import render_metrics
from facestream.web.monitor import Monitor

from .helpers import wait_for
from .test_client import _result
from .test_events_client import make_event

Fields = dict[str, bytes | str | int]

# What a hostile or broken writer puts in a field: too wide for 64 bits, not a number, not
# UTF-8, a path, terminal escapes, JSON of the wrong shape.
_WORST = [
    str(2**64).encode(), str(-(2**70)).encode(), b"nan", b"inf", b"-inf", b"1e400", b"\xff\xfe",
    b"../gallery/obama/erase?", b"\x1b[2J\x1b]0;owned\x07", b"", b"null", b"[1e400]",
    b'{"e2e": NaN}', b"[[[[[[[[[[", b'[{"box": [1, 2]}]', b"1-1", b"g1",
]  # fmt: skip
_HOSTILE = st.one_of(
    st.sampled_from(_WORST),
    st.binary(max_size=24),
    st.integers(min_value=-(2**80), max_value=2**80).map(lambda n: str(n).encode()),
)


def _entries(good: Fields) -> st.SearchStrategy[Fields]:
    """Entries near `good`: some fields replaced by hostile values, some dropped, some added."""
    names = sorted(good)
    changed = st.fixed_dictionaries({}, optional={name: _HOSTILE for name in names})
    mutated = st.builds(
        lambda changes, dropped, extra: {
            **{k: v for k, v in good.items() if k not in dropped},
            **changes,
            **extra,
        },
        changed,
        st.sets(st.sampled_from(names), max_size=2),
        st.dictionaries(st.sampled_from(["x", "v2", "\x1b"]), _HOSTILE, max_size=1),
    )
    return st.one_of(mutated, st.just(good)).filter(bool)


def _as_fields(model: Result | Event) -> Fields:
    return {k: (v if isinstance(v, bytes | int) else str(v)) for k, v in model.to_fields().items()}


_RESULT = _as_fields(_result(1))
_EVENT = _as_fields(make_event(1, "left", identity="obama"))
_FUZZ = hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _passable(item: Any) -> None:
    """What a bridge, the page and a terminal do with an item must work."""
    orjson.dumps(item.model_dump(mode="json"))
    json.dumps(item.model_dump(mode="json"), allow_nan=False)  # Starlette's JSONResponse
    assert "\x1b" not in (
        describe_result(item) if isinstance(item, Result) else describe_event(item)
    )


def _skipped(reader: str) -> float:
    """facestream_entries_skipped_total of `reader`, every reason together."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "facestream_entries_skipped"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["reader"] == reader
    )


def _sentinel(client: redis.Redis, stream: str, fields: Fields) -> str:
    return client.xadd(stream, {**fields, "frame_id": "999-9"}).decode()  # type: ignore[dict-item, union-attr]


def _until(items: Iterator[Any], frame_id: str) -> list[Any]:
    taken = []
    for item in items:
        taken.append(item)
        if item.frame_id == frame_id:
            break
    return taken


def _check_tail_and_subscriber(
    client: redis.Redis, kind: Literal["results", "events"], batch: list[Fields]
) -> None:
    """The tail and a subscriber of `kind` both hand out the same entries, each passable,
    and account for every entry; the subscriber acknowledges the ones it skipped."""
    client.flushall()
    stream, good = (
        (keys.results("g1"), _RESULT) if kind == "results" else (keys.events("g1"), _EVENT)
    )
    subscriber_class = ResultSubscriber if kind == "results" else EventSubscriber
    tail = tail_results if kind == "results" else tail_events
    subscriber = subscriber_class(client, ["g1"], "fuzz", "fuzz-1", 50, start="oldest")
    before = {reader: _skipped(reader) for reader in (f"{kind} tail", f"{kind} subscriber fuzz")}
    for fields in batch:
        client.xadd(stream, fields)  # type: ignore[arg-type]
    _sentinel(client, stream, good)
    stats = TailStats()
    tailed = _until(tail(client, ["g1"], from_start=True, block_ms=50, stats=stats), "999-9")
    assert stats.delivered + stats.invalid == len(batch) + 1
    subscribed = _until(iter(subscriber), "999-9")
    assert [r.frame_id for r in subscribed] == [r.frame_id for r in tailed]
    assert subscriber.stats.invalid == stats.invalid == sum(stats.skipped.values())
    # The metric counts each skip once per reader, as the stats do.
    assert {reader: _skipped(reader) - n for reader, n in before.items()} == {
        f"{kind} tail": stats.invalid,
        f"{kind} subscriber fuzz": stats.invalid,
    }
    for item in tailed + subscribed:
        _passable(item)
        item.to_json()  # what the bridges send
    # Everything before the sentinel is acknowledged, the unparseable too: none comes back.
    assert client.xpending(stream, "fuzz")["pending"] == 1


@_FUZZ
@given(batch=st.lists(_entries(_RESULT), min_size=1, max_size=5))
@example(batch=[{**_RESULT, "faces": b"[1, 2"}])  # the repro: it ended `results tail`
@example(batch=[{**_RESULT, "seq": str(2**64).encode()}])
def test_results_tail_and_subscriber_skip_what_they_cannot_parse(
    client: redis.Redis, batch: list[Fields]
) -> None:
    _check_tail_and_subscriber(client, "results", batch)


@_FUZZ
@given(batch=st.lists(_entries(_EVENT), min_size=1, max_size=5))
@example(batch=[{**_EVENT, "ts": str(2**64).encode()}])  # the repro: `bridge webhook` exit 1
@example(batch=[{**_EVENT, "similarity": b"nan"}])
def test_events_tail_and_subscriber_skip_what_they_cannot_parse(
    client: redis.Redis, batch: list[Fields]
) -> None:
    _check_tail_and_subscriber(client, "events", batch)


@_FUZZ
@given(
    results=st.lists(_entries(_RESULT), max_size=3), events=st.lists(_entries(_EVENT), max_size=3)
)
@example(results=[], events=[{**_EVENT, "first_ts": str(2**64).encode()}])  # closed the feed
@example(results=[{**_RESULT, "latency_ms": b'{"e2e": 1e308}'}] * 2, events=[])
def test_the_pages_feed_goes_on_past_malformed_entries(
    client: redis.Redis, results: list[Fields], events: list[Fields]
) -> None:
    client.flushall()
    client.xadd(keys.frames("g1"), {"v": "1"})  # the group exists: the sampler follows it
    monitor = Monitor(client, WebSettings(sample_s=0.2))
    before = _skipped("feed entries tail")
    monitor.start()
    try:
        wait_for(lambda: "g1" in monitor.following, 20, "the feed to follow g1")
        for fields in results:
            client.xadd(keys.results("g1"), fields)  # type: ignore[arg-type]
        for fields in events:
            client.xadd(keys.events("g1"), fields)  # type: ignore[arg-type]
        _sentinel(client, keys.results("g1"), _RESULT)
        _sentinel(client, keys.events("g1"), _EVENT)
        wait_for(lambda: len([i for i in monitor.feed if i.entry.frame_id == "999-9"]) == 2, 20)
        assert len(monitor.feed) + monitor.skipped.invalid == len(results) + len(events) + 2
        assert _skipped("feed entries tail") - before == monitor.skipped.invalid
        if monitor.skipped.invalid:  # the page's /metrics exports it
            exported = render_metrics(monitor)
            assert b'facestream_entries_skipped_total{reader="feed entries tail"' in exported
        for item in monitor.feed:
            json.dumps(item.to_dict(), allow_nan=False)
            assert item.entry.group == "g1"
        monitor.sample()  # its means of the results' latencies are what the charts get
        json.dumps(monitor.history[-1], allow_nan=False)
    finally:
        monitor.stop()


_LETTER = {k: str(v) for k, v in DeadLetter(frame_id="1-1", group="g1", reason="r", deliveries=5)
           .to_fields().items()}  # fmt: skip


@_FUZZ
@given(batch=st.lists(_entries(_LETTER), min_size=1, max_size=5))  # type: ignore[arg-type]
@example(batch=[{**_LETTER, "deliveries": "many"}])  # the repro: /api/dead answered 500
@example(batch=[{**_LETTER, "group": "../gallery/obama/erase?"}])
def test_dead_letters_list_skips_what_it_cannot_parse(
    client: redis.Redis, batch: list[Fields]
) -> None:
    client.flushall()
    client.xadd(keys.frames("g1"), {"v": "1"})
    for fields in batch:
        client.xadd(keys.dead("g1"), fields)  # type: ignore[arg-type]
    before = _skipped("dead letters")
    page = DeadLetters(client, 1000).list()
    unreadable = sum(page.unreadable.get("g1", {}).values())
    assert len(page.letters) + unreadable == len(batch)
    assert _skipped("dead letters") - before == unreadable
    json.dumps(page.to_dict(), allow_nan=False)
    for listed in page.letters:
        assert listed.letter.group == "g1"
        keys.validate_group(listed.letter.group)


_HEALTH = {"camera": "c1", "group": "g1", "source": "rtsp://cam", "state": "streaming",
           "fps_in": 10.0, "fps_out": 9.5, "frames_in": 3, "last_error": "x"}  # fmt: skip
_JSON_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([float("nan"), float("inf"), 2**64, -(2**70), "\x1b[2Jx", "c2", None, []]),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
)


@_FUZZ
@given(
    health=st.fixed_dictionaries({}, optional={k: _JSON_VALUES for k in _HEALTH}).map(
        lambda changes: {**_HEALTH, **changes}
    ),
    beat=st.fixed_dictionaries(
        {}, optional={"pid": _JSON_VALUES, "at": _JSON_VALUES, "groups": _JSON_VALUES}
    ).map(lambda changes: {"pid": 1, "at": 2, "counts": {"read": 1}, **changes}),
)
@example(health={**_HEALTH, "fps_in": float("nan")}, beat={"pid": 2**64, "at": 1})
def test_status_skips_health_records_and_heartbeats_it_cannot_parse(
    client: redis.Redis, health: dict[str, Any], beat: dict[str, Any]
) -> None:
    client.flushall()
    # What a writer that is not ours might write: Python's json writes NaN and huge integers.
    client.set(keys.camera_health("c1"), json.dumps(health))
    client.set(keys.camera_health("c3"), CameraHealth.model_validate(_HEALTH).model_dump_json())
    client.set(keys.worker_heartbeat("w1"), json.dumps(beat))
    client.set(keys.worker_heartbeat("w2"), Heartbeat(pid=1, at=2).dumps())
    before = _skipped("status records")
    report = collect_status(client)
    assert _skipped("status records") - before == len(report.unreadable)
    assert "c3" in {c.camera for c in report.cameras}
    assert "w2" in {w.consumer for w in report.workers}
    assert len(report.cameras) + len(report.workers) + len(report.unreadable) == 4
    json.dumps(report.to_dict(), allow_nan=False)  # what /api/overview and `status --json` do
    assert "\x1b" not in report.render()


def test_a_health_record_cannot_claim_another_camera(client: redis.Redis) -> None:
    client.set(
        keys.camera_health("c1"),
        CameraHealth(camera="c9", group="g1", source="s").model_dump_json(),
    )
    (health,) = collect_status(client).cameras
    assert health.camera == "c1"


def test_an_unreadable_record_is_named_in_status(client: redis.Redis) -> None:
    client.set(keys.camera_health("c1"), json.dumps({**_HEALTH, "fps_in": float("nan")}))
    report = collect_status(client)
    assert report.cameras == [] and list(report.unreadable) == ["fs:cameras:c1"]
    assert report.unreadable["fs:cameras:c1"].startswith("invalid camera health: 1 validation")
    assert "1 unreadable records skipped:" in report.render()
