"""The backend's side of visit events: EventSubscriber, its filter, fetch_snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from facestream.client import (
    DeliveredEvent,
    EventFilter,
    EventSubscriber,
    fetch_snapshot,
)
from facestream.schemas import Event, EventType, InvalidMessage, keys
from facestream.server import EmbeddedRedis

from .helpers import wait_for


def make_event(
    n: int,
    kind: EventType = "appeared",
    *,
    group: str = "g1",
    camera: str = "c1",
    identity: str | None = None,
    snapshot: str | None = None,
) -> Event:
    """Event number `n` of track t<n>; `left` events carry the visit's figures."""
    left: dict[str, Any] = {}
    if kind == "left":
        left = {"first_ts": n, "last_ts": n + 1500, "dwell_ms": 1500, "frames": 7,
                "best_similarity": 0.8}  # fmt: skip
    return Event(
        type=kind, group=group, camera=camera, track=f"t{n}", ts=n + 1500, frame_id=f"{n}-0",
        identity=identity, similarity=0.75 if identity else None, snapshot=snapshot, **left,
    )  # fmt: skip


def publish_events(client: redis.Redis, *events: Event) -> None:
    """XADD each as the workers do: `Event.to_fields()` is the wire format."""
    for event in events:
        client.xadd(keys.events(event.group), event.to_fields())  # type: ignore[arg-type]


def take(subscriber: EventSubscriber, count: int, timeout_s: float = 30) -> list[DeliveredEvent]:
    """The next `count` events (all acknowledged); fewer if they do not come in `timeout_s`."""
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    taken: list[DeliveredEvent] = []
    try:
        for event in subscriber.listen(stop):
            taken.append(event)
            if len(taken) == count:
                stop.set()  # the subscriber acknowledges this one, then returns
    finally:
        timer.cancel()
    return taken


def _tracks(events: list[DeliveredEvent]) -> list[tuple[str, str, bool]]:
    return [(e.track, e.type, e.redelivered) for e in events]


def test_new_or_oldest_start_and_the_wire_event_comes_back(client: redis.Redis) -> None:
    first = make_event(1, "left", identity="obama", snapshot=keys.snapshot("g1", "t1"))
    publish_events(client, first)
    new = EventSubscriber(client, ["g1"], consumer_group="new", block_ms=50)
    oldest = EventSubscriber(client, ["g1"], consumer_group="old", block_ms=50, start="oldest")
    publish_events(client, make_event(2))
    assert _tracks(take(new, 1)) == [("t2", "appeared", False)]
    both = take(oldest, 2)
    assert _tracks(both) == [("t1", "left", False), ("t2", "appeared", False)]
    # What a backend (or a bridge) passes on is the event as published, nothing added.
    assert both[0].to_json() == first.to_json()
    assert Event.model_validate_json(both[0].to_json()) == first
    assert both[0].entry_id and both[0].dwell_ms == 1500


def test_the_filter_takes_group_camera_identity_and_type(client: redis.Redis) -> None:
    wanted = EventFilter(
        groups=frozenset({"g1", "g2"}),
        cameras=frozenset({"c1"}),
        identities=frozenset({"obama"}),
        types=frozenset({"identified", "left"}),
    )
    assert wanted(make_event(1, "identified", identity="obama"))
    assert wanted(make_event(1, "left", group="g2", identity="obama"))
    assert not wanted(make_event(1, "identified", group="g3", identity="obama"))
    assert not wanted(make_event(1, "identified", camera="c2", identity="obama"))
    assert not wanted(make_event(1, "identified", identity="biden"))
    assert not wanted(make_event(1, "identified"))  # unknown: not one of the identities
    assert not wanted(make_event(1, "seen", identity="obama"))
    assert EventFilter()(make_event(1))

    subscriber = EventSubscriber(
        client, ["g1"], consumer_group="mall", block_ms=50, wanted=EventFilter(
            types=frozenset({"left"}))
    )  # fmt: skip
    publish_events(client, make_event(1), make_event(1, "left"), make_event(2))
    publish_events(client, make_event(2, "left"))
    assert _tracks(take(subscriber, 2)) == [("t1", "left", False), ("t2", "left", False)]
    # Filtered-out events are acknowledged too: nothing is left pending.
    assert client.xpending(keys.events("g1"), "mall")["pending"] == 0


def test_fetch_snapshot_returns_the_jpeg_or_none_once_it_expired(client: redis.Redis) -> None:
    jpeg = b"\xff\xd8\xff\xe0 a face \xff\xd9"
    kept = make_event(1, "left", snapshot=keys.snapshot("g1", "t1"))
    client.set(keys.snapshot("g1", "t1"), jpeg, px=60_000)
    client.set(keys.snapshot("g1", "t2"), jpeg, px=1)
    gone = make_event(2, "left", snapshot=keys.snapshot("g1", "t2"))
    assert fetch_snapshot(client, kept) == jpeg
    assert fetch_snapshot(client, make_event(3, "left")) is None  # names none
    # A key with a TTL of 1 ms: once Redis no longer has it, the event's snapshot is gone.
    wait_for(lambda: not client.exists(keys.snapshot("g1", "t2")), 5, "the snapshot to expire")
    assert fetch_snapshot(client, gone) is None


def test_a_snapshot_key_outside_the_group_is_refused(client: redis.Redis) -> None:
    client.set(keys.GALLERY_IDENTITIES, b"secret embeddings")
    hostile = make_event(1, "left", snapshot=keys.GALLERY_IDENTITIES)
    with pytest.raises(InvalidMessage, match=r"is not a snapshot of group g1$"):
        fetch_snapshot(client, hostile)
    other_group = make_event(2, "left", snapshot=keys.snapshot("g2", "t2"))
    with pytest.raises(InvalidMessage, match=r"is not a snapshot of group g1$"):
        fetch_snapshot(client, other_group)


def test_invalid_events_are_skipped_counted_and_acknowledged(client: redis.Redis) -> None:
    subscriber = EventSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    client.xadd(keys.events("g1"), {"type": "exploded", "group": "g1"})
    publish_events(client, make_event(1, "left", snapshot=keys.GALLERY_IDENTITIES))
    # An event that says it belongs to g2 although it was written to g1's stream.
    client.xadd(keys.events("g1"), make_event(2, group="g2").to_fields())  # type: ignore[arg-type]
    publish_events(client, make_event(3))
    assert _tracks(take(subscriber, 1)) == [("t3", "appeared", False)]
    assert subscriber.stats.invalid == 3 and subscriber.stats.delivered == 1
    assert client.xpending(keys.events("g1"), "mall")["pending"] == 0


def test_events_of_a_consumer_that_died_are_claimed_and_marked(client: redis.Redis) -> None:
    dead = EventSubscriber(client, ["g1"], consumer_group="bridge", consumer="dead", block_ms=50)
    publish_events(client, make_event(0), make_event(1), make_event(2))
    assert _tracks(take(dead, 1)) == [("t0", "appeared", False)]  # 1 and 2 stay pending
    heir = EventSubscriber(
        client, ["g1"], consumer_group="bridge", consumer="heir", block_ms=50, claim_idle_ms=300
    )
    publish_events(client, make_event(3))
    assert sorted(_tracks(take(heir, 3))) == [
        ("t1", "appeared", True), ("t2", "appeared", True), ("t3", "appeared", False),
    ]  # fmt: skip
    assert heir.stats.claimed == 2 and heir.stats.redelivered == 2
    assert client.xpending(keys.events("g1"), "bridge")["pending"] == 0


def test_a_flushed_events_group_is_created_again(client: redis.Redis) -> None:
    subscriber = EventSubscriber(client, ["g1"], consumer_group="mall", block_ms=50)
    publish_events(client, make_event(1))
    assert _tracks(take(subscriber, 1)) == [("t1", "appeared", False)]
    client.flushall()
    publish_events(client, make_event(2))
    assert _tracks(take(subscriber, 1)) == [("t2", "appeared", False)]
    assert subscriber.stats.regrouped == 1


def _tail(redis_server: EmbeddedRedis, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facestream", "events", "tail", *args,
         "--redis-url", redis_server.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_events_tail_prints_filters_and_saves_snapshots(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    jpeg = b"\xff\xd8\xff\xe0 a face \xff\xd9"
    client.set(keys.snapshot("g1", "t1"), jpeg)
    left = make_event(1, "left", identity="obama", snapshot=keys.snapshot("g1", "t1"))
    publish_events(
        client,
        make_event(1),  # not a `left`: filtered out
        make_event(3, "left", snapshot=keys.GALLERY_IDENTITIES),  # invalid: skipped
        left,
        make_event(2, "left", snapshot=keys.snapshot("g1", "t2")),  # expired: no file
    )
    folder = tmp_path / "crops"
    done = _tail(redis_server, "--group", "g1", "--from-start", "--count", "2", "--json",
                 "--type", "left", "--snapshots", str(folder))  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["track"], e["type"]) for e in printed] == [("t1", "left"), ("t2", "left")]
    assert printed[0] == json.loads(left.to_json())
    assert sorted(p.name for p in folder.iterdir()) == ["g1-t1.jpg"]
    assert (folder / "g1-t1.jpg").read_bytes() == jpeg

    wrong = _tail(redis_server, "--group", "g1", "--type", "left,gone")
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr == "error: --type gone: expected some of appeared, identified, left, seen\n"
