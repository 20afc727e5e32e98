"""`facestream events tail`: print visit events as they come, optionally saving their snapshots."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, get_args

import redis
import structlog
import typer

from facestream.schemas import Event, EventType, FacestreamError, InvalidMessage

from .cli_feeds import echo_feed, tail_sources
from .cli_options import cli_settings, split_list
from .client import EventFilter, describe_event, fetch_snapshot, tail_events
from .feed import MergedFeed

__all__ = ["events_app"]

events_app = typer.Typer(no_args_is_help=True, help="Read visit events (appeared, left, ...).")

log = structlog.get_logger("cli.events")

_TYPES: tuple[str, ...] = get_args(EventType)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@events_app.command("tail")
def events_tail(
    group: Annotated[str, typer.Option(help="Camera group(s), comma-separated.")],
    json_output: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
    count: Annotated[int | None, typer.Option(help="Stop after N events.")] = None,
    from_start: Annotated[bool, typer.Option(help="Begin with the oldest kept event.")] = False,
    identity: Annotated[str | None, typer.Option(help="Only events naming one of these.")] = None,
    camera: Annotated[str | None, typer.Option(help="Only events of these cameras.")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help=f"Only these types ({', '.join(_TYPES)}).")
    ] = None,
    snapshots: Annotated[
        Path | None,
        typer.Option(
            help="Save the face crop of each event that names one as DIR/<group>-<track>.jpg.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Print visit events as they are published (filters take comma-separated lists)."""
    settings = cli_settings()
    names = split_list(group) or []
    types = split_list(event_type)
    wrong = sorted(set(types or []) - set(_TYPES))
    if wrong:
        raise FacestreamError(f"--type {', '.join(wrong)}: expected some of {', '.join(_TYPES)}")
    if snapshots is not None:
        try:
            snapshots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FacestreamError(f"--snapshots {snapshots}: cannot create it ({exc})") from exc
    sources = tail_sources(settings, names)
    wanted = EventFilter(
        cameras=frozenset(split_list(camera) or []) if camera else None,
        identities=frozenset(split_list(identity) or []) if identity else None,
        types=frozenset(types) if types else None,  # type: ignore[arg-type]  # checked above
    )
    feed = MergedFeed(
        {
            name: partial(_tail, client, node_groups, from_start, wanted)
            for name, (client, node_groups) in sources.items()
        }
    )

    def line(delivered: tuple[redis.Redis, Event]) -> str:
        client, event = delivered
        saved = _save_snapshot(client, event, snapshots) if snapshots else None
        text = event.to_json().decode() if json_output else describe_event(event)
        return text + (f"  [{saved}]" if saved and not json_output else "")

    echo_feed(feed, line, count)


def _tail(
    client: redis.Redis,
    groups: list[str],
    from_start: bool,
    wanted: EventFilter,
    stop: threading.Event,
) -> Iterator[tuple[redis.Redis, Event]]:
    """A node's events, each with the client of its node (where its snapshot is kept)."""
    for event in tail_events(client, groups, from_start=from_start, stop=stop, wanted=wanted):
        yield client, event


def _save_snapshot(client: redis.Redis, event: Event, folder: Path) -> Path | None:
    """Write the event's JPEG into `folder`; a snapshot that expired is logged and skipped."""
    if event.snapshot is None:
        return None
    try:
        jpeg = fetch_snapshot(client, event)
    except InvalidMessage as exc:
        log.warning("snapshot not saved", track=event.track, error=exc.reason)
        return None
    if jpeg is None:
        log.info("snapshot expired before it was read", track=event.track, key=event.snapshot)
        return None
    # The track id comes from the stream: keep it from naming a path elsewhere.
    path = folder / f"{event.group}-{_UNSAFE.sub('_', event.track)[:100]}.jpg"
    path.write_bytes(jpeg)
    return path
