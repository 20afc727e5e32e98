"""What every bridge shares: its consumer groups, the pump that acks after delivery, dead letters.

A bridge reads with a subscriber of its own consumer group and hands each entry to a deliver
function that returns only once the other side confirmed it (True), or when a stop was asked
for before it could (False: the entry stays pending and is delivered again after a restart).
The subscriber acknowledges an entry when the next one is asked for, i.e. after delivery.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic, Literal, TypeVar

import redis
import structlog

from facestream.client import DeliveredEvent, StreamSubscriber
from facestream.health import Probe
from facestream.ingest.outages import Outages, Stopped
from facestream.schemas import EventDeadLetter, keys

from . import metrics
from .settings import BridgeError, BridgeSettings

__all__ = [
    "Pump",
    "Sources",
    "bridge_subscriber",
    "dead_letter",
    "require_groups",
    "run_pumps",
    "stop_on_signals",
]

D = TypeVar("D")
#: Where to read: source name -> (its Redis client, its camera groups); see facestream.feed.
Sources = Mapping[str, tuple[redis.Redis, list[str]]]
S = TypeVar("S", bound=StreamSubscriber[Any])

log = structlog.get_logger("bridge")

# Dead letters are for people to look at; enough of them to see a pattern, bounded memory.
DEAD_MAXLEN = 10_000


class Pump(Generic[D]):
    """One subscriber feeding one deliver function, in its own thread."""

    def __init__(
        self, name: str, subscriber: StreamSubscriber[D], deliver: Callable[[D], bool]
    ) -> None:
        self.name = name
        self.subscriber = subscriber
        self.deliver = deliver
        self.error: BaseException | None = None

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(stop,), name=f"pump-{self.name}")
        thread.start()
        return thread

    def _run(self, stop: threading.Event) -> None:
        try:
            for item in self.subscriber.listen(stop):
                if not self.deliver(item):
                    return  # stopping before the other side confirmed it: it stays pending
        except Stopped:
            return  # asked to stop while Redis was away: what was in hand stays pending
        except BaseException as exc:  # handed to the main thread, which exits with it
            self.error = exc
            log.error("bridge stopped by an error", pump=self.name, error=str(exc))
        finally:
            stop.set()


def run_pumps(pumps: Sequence[Pump[Any]], stop: threading.Event) -> None:
    """Run every pump until `stop` (or one fails: then its error is raised here)."""
    threads = [pump.start(stop) for pump in pumps]
    while not stop.wait(0.5):
        pass
    for thread in threads:
        thread.join()
    for pump in pumps:
        if pump.error is not None:
            raise pump.error


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C ask for a clean stop: deliveries in flight end, then exit 0."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def bridge_subscriber(
    cls: type[S],
    client: redis.Redis,
    groups: Sequence[str],
    kind: Literal["mqtt", "webhook"],
    settings: BridgeSettings,
    from_start: bool,
    probe: Probe,
) -> S:
    """A subscriber in the bridge's own consumer group, `bridge-<kind>-<name>`.

    Its own group: the bridge reads every entry once, whatever other readers do. The consumer
    is the host name, stable across restarts, so a restarted bridge takes up what it left
    pending at once instead of waiting `claim_idle_ms` for it to be claimed.
    """
    name = settings.mqtt.name if kind == "mqtt" else settings.webhook.name
    subscriber = cls(
        client,
        groups,
        f"bridge-{kind}-{name}",
        socket.gethostname(),
        settings.block_ms,
        start="oldest" if from_start else "new",
        claim_idle_ms=settings.claim_idle_ms,
    )
    subscriber.on_round = probe.beat
    return subscriber


def require_groups(groups: Sequence[str]) -> list[str]:
    names = [keys.validate_group(group) for group in groups]
    if not names:
        raise BridgeError("no camera group: pass --group (comma-separated) or set groups:")
    return names


def dead_letter(
    client: redis.Redis,
    event: DeliveredEvent,
    bridge: str,
    reason: str,
    attempts: int,
    outages: Outages,
) -> None:
    """Keep an event that cannot be delivered on `fs:{G}:events:dead` with the reason.

    Through a Redis outage it waits, like the subscriber does (Stopped if asked to stop).
    """
    letter = EventDeadLetter(
        entry_id=event.entry_id,
        group=event.group,
        bridge=bridge,
        reason=reason,
        attempts=attempts,
        event=event.to_json().decode(),
    )
    stream = keys.events_dead(event.group)
    fields = letter.to_fields()
    outages.call(partial(client.xadd, stream, fields, maxlen=DEAD_MAXLEN, approximate=True))  # type: ignore[arg-type]
    metrics.DEAD_LETTERS.labels(bridge).inc()
    log.warning("event dead-lettered", bridge=bridge, entry_id=event.entry_id, reason=letter.reason)
