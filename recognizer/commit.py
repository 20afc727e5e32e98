"""The ack-gated commit: XACK, and only if it acked, XADD the output and SET the cache.

A worker whose entry was claimed by another one gets 0 from XACK and publishes nothing, so a
frame never gets two results; a crash before the commit leaves the entry pending for XAUTOCLAIM,
so it never gets none. All keys carry the group's hash tag: one slot, works on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from redis.commands.core import Script

__all__ = ["Committer"]

_ACK_THEN_PUBLISH = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
    return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 6))
if ARGV[5] ~= '' then
    redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[4])
end
return 1
"""


class Committer:
    """Queues commits on a pipeline; `execute` sends them all in one round trip."""

    def __init__(self, client: redis.Redis, consumer_group: str) -> None:
        self._script: Script = client.register_script(_ACK_THEN_PUBLISH)
        self._consumer_group = consumer_group

    def queue(
        self,
        pipe: redis.client.Pipeline,
        *,
        source: str,
        entry_id: str,
        target: str,
        target_maxlen: int,
        fields: Mapping[str, bytes | str | int],
        cache_key: str,
        cache_value: bytes = b"",
        cache_ttl_s: int = 0,
    ) -> None:
        """Queue one commit; `cache_value` empty means leave the cache alone."""
        args: list[bytes | str | int] = [
            self._consumer_group,
            entry_id,
            target_maxlen,
            cache_ttl_s,
            cache_value,
        ]
        for name, value in fields.items():
            args.extend((name, value))
        self._script(keys=[source, target, cache_key], args=args, client=pipe)
