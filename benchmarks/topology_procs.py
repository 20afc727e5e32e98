"""The worker supervisor's process family on Linux: its CPU time (/proc) and signals to all."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the process name (state, ppid, pgrp, ...), or None."""
    try:
        return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # gone meanwhile


def family(root: int) -> list[int]:
    """`root` and its descendants (the supervisor and its worker processes, each of which
    runs in its own process group)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            parents[int(entry.name)] = int(fields[1])
    found = [root]
    for pid in found:
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def family_cpu_s(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (Linux /proc)."""
    ticks = 0
    for pid in family(root):
        fields = _stat(str(pid))
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def signal_family(root: int, signum: int) -> None:
    for pid in family(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
