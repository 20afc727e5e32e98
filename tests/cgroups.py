"""A memory cgroup for a test's processes: the kernel's OOM killer as a real, repeatable crash."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["MemoryCage", "memory_cage"]

_ROOT = Path("/sys/fs/cgroup")


class MemoryCage:
    """A child memory cgroup (v1 or v2) of this process's own; processes started in it are
    OOM-killed (SIGKILL) by the kernel once they need more than `limit()` allows."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    def start(
        self, command: Sequence[str], env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        procs = self.path / "cgroup.procs"
        with log.open("ab") as out:
            # In the cage before exec: everything the process allocates is charged to it.
            return subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: procs.write_text(str(os.getpid())),
            )

    def working_set(self) -> int:
        """Memory the cage's processes hold and cannot give back without swap (anonymous) plus
        the files they have mapped (their code): not the page cache the kernel reclaims."""
        stat = dict(
            (name, int(value))
            for name, value in (
                line.split() for line in (self.path / "memory.stat").read_text().splitlines()
            )
        )
        if self.v2:
            return stat["anon"] + stat["file_mapped"]
        return stat["rss"] + stat["mapped_file"]

    def limit(self, limit_bytes: int) -> None:
        if self.v2:
            (self.path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
            return
        (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        with contextlib.suppress(OSError):  # no swap accounting: nothing to swap to anyway
            (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))

    def ooms(self) -> int:
        """How often the kernel's OOM killer acted in the cage."""
        if self.v2:
            events = (self.path / "memory.events").read_text().split()
            return int(events[events.index("oom_kill") + 1])
        control = (self.path / "memory.oom_control").read_text().split()
        return int(control[control.index("oom_kill") + 1]) if "oom_kill" in control else -1


def _own_memory_cgroup() -> tuple[Path, bool] | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return _ROOT / "memory" / path.lstrip("/"), False
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            base = _ROOT / line[3:].lstrip("/")
            if "memory" in (base / "cgroup.controllers").read_text().split():
                return base, True
    return None


@contextlib.contextmanager
def memory_cage(name: str) -> Iterator[MemoryCage | None]:
    """A fresh cage (None where this process may not make one), removed afterwards."""
    own = _own_memory_cgroup()
    if own is None:
        yield None
        return
    base, v2 = own
    path = base / name
    try:
        path.mkdir()
    except OSError:
        yield None
        return
    if v2 and not (path / "memory.max").exists():  # the memory controller is not delegated
        path.rmdir()
        yield None
        return
    try:
        yield MemoryCage(path, v2)
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()  # its processes are gone by now
