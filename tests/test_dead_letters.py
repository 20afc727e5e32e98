"""Dead letters in one place: the DeadLetters API and `facestream dead`, against a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
import redis

from facestream.dead_letters import DeadLetters, InvalidRequest, NotRetryable
from facestream.ingest import FramePublisher, iter_frames
from facestream.schemas import DeadLetter, FrameLimits, keys
from facestream.server import EmbeddedRedis

from .helpers import FACES

MAXLEN = 1000

# Entries no worker writes but anyone who may XADD could: each must be skipped, not shown.
HOSTILE: list[dict[str, str]] = [
    {"frame_id": "1-1", "group": "../gallery/obama/erase?", "reason": "x", "deliveries": "5"},
    {"frame_id": "1-1", "group": "g2", "reason": "another group's letter", "deliveries": "5"},
    {"frame_id": "../../x", "group": "g1", "reason": "x", "deliveries": "5"},
    {"frame_id": "1-1", "group": "g1", "reason": "x", "deliveries": str(2**70)},
    {"frame_id": "1-1", "group": "g1"},
]


def _letter(client: redis.Redis, frame_id: str, group: str = "g1") -> str:
    letter = DeadLetter(frame_id=frame_id, group=group, reason="delivered 5 times", deliveries=5)
    return client.xadd(keys.dead(group), letter.to_fields()).decode()  # type: ignore[arg-type, union-attr]


def _frame(client: redis.Redis) -> str:
    publisher = FramePublisher(client, "g1", "cam-a", MAXLEN, FrameLimits())
    return publisher.publish(next(iter(iter_frames(FACES / "test"))))


def test_list_shows_good_letters_and_counts_the_unreadable(client: redis.Redis) -> None:
    frame_id = _frame(client)
    good = _letter(client, frame_id)
    for fields in HOSTILE:
        client.xadd(keys.dead("g1"), fields)  # type: ignore[arg-type]
    newest = _letter(client, "2-2")
    page = DeadLetters(client, MAXLEN).list()
    assert [listed.id for listed in page.letters] == [newest, good]
    assert page.total == {"g1": len(HOSTILE) + 2}
    assert sum(page.unreadable["g1"].values()) == len(HOSTILE)
    assert page.to_dict()["unreadable"] == {"g1": len(HOSTILE)}
    assert all(listed.letter.group == "g1" for listed in page.letters)


def test_retry_resends_once_and_refuses_what_it_cannot(client: redis.Redis) -> None:
    frame_id = _frame(client)
    kept, gone = _letter(client, frame_id), _letter(client, "1-1")
    bad = client.xadd(keys.dead("g1"), HOSTILE[0]).decode()  # type: ignore[arg-type, union-attr]
    letters = DeadLetters(client, MAXLEN)
    assert letters.retry("g1", kept) == frame_id
    entries = client.xrange(keys.frames("g1"))
    assert len(entries) == 2 and entries[0][1] == entries[1][1]  # type: ignore[arg-type, index]
    with pytest.raises(NotRetryable, match=rf"^no dead letter {kept} in group g1$"):
        letters.retry("g1", kept)
    with pytest.raises(NotRetryable, match=r"^frame 1-1 is no longer kept in fs:\{g1\}:frames: "):
        letters.retry("g1", gone)
    with pytest.raises(NotRetryable, match=rf"^dead letter {bad} does not parse \(invalid dead "):
        letters.retry("g1", bad)
    with pytest.raises(InvalidRequest, match=r"^invalid entry id '9x'$"):
        letters.retry("g1", "9x")
    assert letters.purge("g1", bad) == 1
    assert letters.purge("g1") == 1  # the one left: `gone`
    assert client.xlen(keys.dead("g1")) == 0


def _facestream(server: EmbeddedRedis, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facestream", "--redis-url", server.url, "dead", *args],
        env=os.environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_lists_retries_and_purges(redis_server: EmbeddedRedis, client: redis.Redis) -> None:
    frame_id = _frame(client)
    kept = _letter(client, frame_id)
    client.xadd(keys.dead("g1"), {**HOSTILE[3], "reason": "\x1b[2Jwiped"})  # type: ignore[dict-item]
    escape = DeadLetter(frame_id="1-1", group="g1", reason="ok", deliveries=5, camera="c\x1b]0;x")
    client.xadd(keys.dead("g1"), escape.to_fields())  # type: ignore[arg-type]

    done = _facestream(redis_server, "list")
    assert done.returncode == 0, done.stderr
    assert kept in done.stdout and frame_id in done.stdout
    assert "\x1b" not in done.stdout
    assert done.stdout.rstrip().endswith(
        "g1: 3 dead letter(s), 1 unreadable (skipped; `dead purge` removes them)"
    )
    listed = orjson.loads(_facestream(redis_server, "list", "--json", "--groups", "g1").stdout)
    assert [letter["id"] for letter in listed["letters"]][-1] == kept
    assert listed["total"] == {"g1": 3} and listed["unreadable"] == {"g1": 1}

    done = _facestream(redis_server, "retry", "g1", kept)
    assert (done.returncode, done.stdout) == (0, f"retried {kept}: frame {frame_id} sent again\n")
    for args, message in [
        (("retry", "g1", kept), f"error: no dead letter {kept} in group g1\n"),
        (("retry", "g1", "9x"), "error: invalid entry id '9x'\n"),
        (("purge", "../gallery"), "error: invalid camera group '../gallery': use 1-64 "),
    ]:
        done = _facestream(redis_server, *args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.startswith(message), done.stderr
    done = _facestream(redis_server, "purge", "g1")
    assert (done.returncode, done.stdout) == (0, "purged 2 dead letter(s) of g1\n")
    assert client.xlen(keys.dead("g1")) == 0


def test_cli_says_when_redis_is_unreachable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "--redis-url", "redis://127.0.0.1:1/0", "dead",
         "list"], env=os.environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: cannot reach Redis")
