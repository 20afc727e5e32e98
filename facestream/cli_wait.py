"""Long-running commands wait out a Redis that is away when they start, as any later outage."""

from __future__ import annotations

from collections.abc import Iterable

import typer

from .connect import Connections
from .signals import signalled_stop
from .topology import Node

__all__ = ["wait_for_redis"]


def wait_for_redis(connections: Connections, nodes: Iterable[Node], who: str) -> None:
    """Return once every one of `nodes` (e.g. Connections.holding(groups)) answers; SIGTERM
    or Ctrl-C meanwhile exits 0.

    One-shot commands (status, gallery, dead…) do not wait: they fail with one line, exit 3.
    """
    with signalled_stop() as stop:
        if not connections.wait(nodes, stop, who):
            raise typer.Exit(0)  # asked to stop before Redis came: nothing was started
