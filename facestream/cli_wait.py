"""Long-running commands wait out a Redis that is away when they start, as any later outage."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import typer

from .connect import Connections
from .ingest.outages import Outages, Stopped
from .signals import signalled_stop
from .topology import Node

__all__ = ["wait_for_redis"]

T = TypeVar("T")


def wait_for_redis(
    who: str,
    connections: Connections,
    nodes: Iterable[Node],
    check: Callable[[], T],
) -> T:
    """`check`'s answer (a role's first reads: warn_unknown_groups, where to read), once every
    one of `nodes` answered and `check` went through; SIGTERM or Ctrl-C meanwhile exits 0.

    Away (unreachable, or a cluster none of whose nodes answers) or "not now" (LOADING,
    CLUSTERDOWN while a restarted cluster agrees again) is an outage like any later one:
    "redis unavailable" at once, then seldom (`who` names the role), retried with back-off.
    A refusal (a wrong password, NOPERM) or the check's own error is raised: no wait mends it.
    One-shot commands (status, gallery, dead…) do not wait: they fail with one line, exit 3.
    """
    waited = list(nodes)

    def ready() -> T:
        connections.ping(waited)
        return check()

    with signalled_stop() as stop:
        try:
            answer = Outages(stop, who).call(ready)
        except Stopped:
            raise typer.Exit(0) from None  # asked to stop before Redis came: nothing started
        if stop.is_set():  # the signal came during the attempt that went through
            raise typer.Exit(0)
        return answer
