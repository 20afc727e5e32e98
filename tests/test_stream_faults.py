"""A stream at its last possible id or emptied by MAXLEN 0 (no ACL stops either) is reported,
and the repair docs/security.md gives works where XTRIM does not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from facestream.server import EmbeddedRedis
from facestream.status import collect_status
from facestream.stream_faults import LAST_POSSIBLE_ID, StreamFault, stream_faults

FRAMES, RESULTS = "fs:{g1}:frames", "fs:{g1}:results"


def _status(server: EmbeddedRedis) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facestream", "status", "--redis-url", server.url],
        env=os.environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_stream_at_the_last_possible_id(redis_server: EmbeddedRedis, client: redis.Redis) -> None:
    client.xadd(FRAMES, {"v": "1"})
    client.xgroup_create(FRAMES, "recognizers", id="0")
    client.xadd(RESULTS, {"v": "1"})
    assert stream_faults(client, "g1") == []
    client.xadd(FRAMES, {"v": "1"}, id=LAST_POSSIBLE_ID)  # what any XADD-er may send
    with pytest.raises(redis.ResponseError, match="exhausted the last possible ID"):
        client.xadd(FRAMES, {"v": "1"})
    assert stream_faults(client, "g1") == [StreamFault(FRAMES, "last-id")]
    done = _status(redis_server)
    assert done.returncode == 0, done.stderr
    assert (
        f"STREAM FAULT: {FRAMES} is at the last possible id: every XADD to it fails; "
        "repair: DEL it (docs/security.md), XTRIM does not help"
    ) in done.stdout

    client.xtrim(FRAMES, maxlen=0)  # not a repair: the stream keeps its last id
    with pytest.raises(redis.ResponseError, match="exhausted the last possible ID"):
        client.xadd(FRAMES, {"v": "1"})
    assert collect_status(client).groups[0].faults == (StreamFault(FRAMES, "last-id"),)

    client.delete(FRAMES)  # the repair: workers create their consumer group again
    client.xadd(FRAMES, {"v": "1"})
    assert stream_faults(client, "g1") == []


def test_xsetid_repairs_a_stream_trimmed_empty(client: redis.Redis) -> None:
    client.xadd(RESULTS, {"v": "1"})
    client.xgroup_create(RESULTS, "mall", id="$")
    client.xadd(RESULTS, {"v": "1"}, id=LAST_POSSIBLE_ID)
    # The documented repair that keeps consumer groups: empty it, set a current id, and
    # move each group that read past it back to the end.
    client.xtrim(RESULTS, maxlen=0)
    client.execute_command("XSETID", RESULTS, "1-0")
    client.xgroup_setid(RESULTS, "mall", id="$")
    new_id = client.xadd(RESULTS, {"v": "2"})
    assert stream_faults(client, "g1") == []
    assert client.xreadgroup("mall", "b", {RESULTS: ">"}) == [
        [RESULTS.encode(), [(new_id, {b"v": b"2"})]]
    ]


def test_a_stream_emptied_by_maxlen_0(redis_server: EmbeddedRedis, client: redis.Redis) -> None:
    for _ in range(3):
        client.xadd(RESULTS, {"v": "1"}, maxlen=1000, approximate=True)
    assert stream_faults(client, "g1") == []
    client.xadd(RESULTS, {"v": "1"}, maxlen=0)
    assert stream_faults(client, "g1") == [StreamFault(RESULTS, "emptied")]
    done = _status(redis_server)
    assert f"STREAM FAULT: {RESULTS} was emptied" in done.stdout
    # Dead letters are purged on purpose: an empty dead-letter stream is no fault.
    client.xadd("fs:{g1}:dead", {"v": "1"}, maxlen=0)
    assert stream_faults(client, "g1") == [StreamFault(RESULTS, "emptied")]


def test_a_far_future_id_does_not_block_a_stream(client: redis.Redis) -> None:
    """Only the last possible id blocks: after any other id, XADD * carries on past it."""
    client.xadd(FRAMES, {"v": "1"}, id="99999999999999-0")
    assert client.xadd(FRAMES, {"v": "1"}) == b"99999999999999-1"
    client.xadd(FRAMES, {"v": "1"}, id=f"{2**64 - 1}-5")
    assert client.xadd(FRAMES, {"v": "1"}) == f"{2**64 - 1}-6".encode()
    assert stream_faults(client, "g1") == []
