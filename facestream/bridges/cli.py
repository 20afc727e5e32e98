"""`facestream bridge mqtt|webhook`: the long-running bridges from the events stream."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from facestream.cli_options import cli_settings, split_list
from facestream.cli_wait import wait_for_redis
from facestream.config import Settings
from facestream.connect import Connections
from facestream.feed import read_sources
from facestream.health import Probe, serve_health
from facestream.topology import Topology

from .base import Sources, require_groups, stop_on_signals

__all__ = ["bridge_app"]

bridge_app = typer.Typer(no_args_is_help=True, help="Pass visit events on to MQTT or webhooks.")

GroupOption = Annotated[
    str | None, typer.Option(help="Camera group(s), comma-separated (default: groups:).")
]
MetricsPortOption = Annotated[
    int | None, typer.Option(help="Port of /metrics, /healthz, /readyz (metrics_address).")
]
FromStartOption = Annotated[
    bool, typer.Option(help="A new bridge starts at the oldest kept event, not the next one.")
]
ExistingFile = Annotated[Path | None, typer.Option(exists=True, dir_okay=False)]


def _start(settings: Settings, group: str | None, metrics_port: int | None) -> tuple[
    Sources, Probe, threading.Event
]:  # fmt: skip
    """Where to read (one source per node holding the groups), the probe, the stop event."""
    groups = require_groups(split_list(group) or settings.groups)
    probe = Probe()
    if metrics_port:
        serve_health(metrics_port, str(settings.metrics_address), probe)
    connections = Connections(Topology(settings))
    sources = wait_for_redis(
        "bridge",
        connections,
        connections.holding(groups),
        lambda: read_sources(connections, groups),
    )
    stop = threading.Event()
    stop_on_signals(stop)
    return sources, probe, stop


@bridge_app.command("mqtt")
def mqtt_command(
    group: GroupOption = None,
    host: Annotated[str | None, typer.Option(help="Broker host (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Broker port (default 1883).")] = None,
    name: Annotated[
        str | None, typer.Option(help="Bridge name: consumer group, availability topic.")
    ] = None,
    topic_prefix: Annotated[str | None, typer.Option(help="First topic level.")] = None,
    results: Annotated[
        bool | None, typer.Option("--results/--no-results", help="Also publish every result.")
    ] = None,
    username: Annotated[str | None, typer.Option(help="Broker user name.")] = None,
    password_file: ExistingFile = None,
    tls: Annotated[bool | None, typer.Option("--tls/--no-tls", help="Connect with TLS.")] = None,
    ca_file: ExistingFile = None,
    cert_file: ExistingFile = None,
    key_file: ExistingFile = None,
    metrics_port: MetricsPortOption = None,
    from_start: FromStartOption = False,
) -> None:
    """Publish events to an MQTT broker at QoS 1 (topic <prefix>/<group>/<camera>/<type>)."""
    from .mqtt import run_mqtt_bridge

    mqtt = {
        "host": host, "port": port, "name": name, "topic_prefix": topic_prefix,
        "results": results, "username": username, "password_file": password_file, "tls": tls,
        "tls_ca_file": ca_file, "tls_cert_file": cert_file, "tls_key_file": key_file,
    }  # fmt: skip
    settings = cli_settings(bridge={"mqtt": mqtt})
    sources, probe, stop = _start(settings, group, metrics_port)
    run_mqtt_bridge(sources, settings.bridge, probe, stop, from_start=from_start)


@bridge_app.command("webhook")
def webhook_command(
    url: Annotated[
        str | None,
        typer.Argument(
            help="http(s):// URL that receives each event (POST); default: "
            "bridge.webhook.url_file or bridge.webhook.url (a URL with a token belongs there)."
        ),
    ] = None,
    group: GroupOption = None,
    secret_file: ExistingFile = None,
    name: Annotated[str | None, typer.Option(help="Bridge name: its consumer group.")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="POSTs per event before it is dead-lettered.")
    ] = None,
    backoff: Annotated[
        float | None, typer.Option(help="First retry delay in seconds (then doubled).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per POST.")] = None,
    metrics_port: MetricsPortOption = None,
    from_start: FromStartOption = False,
) -> None:
    """POST each event as signed JSON; retry, then dead-letter to fs:{G}:events:dead."""
    from .webhook import run_webhook_bridge, webhook_url

    webhook = {
        "secret_file": secret_file, "name": name, "max_attempts": max_attempts,
        "backoff_s": backoff, "timeout_s": timeout,
    }  # fmt: skip
    settings = cli_settings(bridge={"webhook": webhook})
    target = webhook_url(settings.bridge.webhook, url)
    sources, probe, stop = _start(settings, group, metrics_port)
    run_webhook_bridge(sources, target, settings.bridge, probe, stop, from_start=from_start)
