"""Redis nodes on test "hosts" of their own: a network namespace, a veth pair, netem delay.

Loopback answers in microseconds; a real node is a network hop away. Each `NamespacedRedis`
puts a redis-server in its own namespace behind a veth pair whose both ends delay packets
(`tc qdisc … netem delay`, where the kernel has netem: `delayed` says), so a test using it
notices anything that silently depends on loopback. Needs root and `ip netns`;
`namespaces_unavailable()` says why not.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from facestream.server import find_redis_server, free_port

__all__ = ["NamespacedRedis", "namespaces_unavailable"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def namespaces_unavailable() -> str | None:
    """None where a namespace can be made here, else why not (to skip with)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc)"
    probe = f"fs-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"network namespaces (ip netns add failed: {exc})"
    _ip("netns", "del", probe)
    return None


class NamespacedRedis:
    """A redis-server alone in a network namespace, reached over a veth pair with `delay_ms`
    added each way; `index` picks its subnet (10.231.<index>.0/30)."""

    def __init__(self, index: int, data_dir: Path, delay_ms: float = 5.0) -> None:
        tag = secrets.token_hex(2)
        self.namespace = f"fs-node{index}-{tag}"
        self.host_end, self.node_end = f"fsh{index}{tag}", f"fsn{index}{tag}"
        self.host_ip, self.node_ip = f"10.231.{index}.1", f"10.231.{index}.2"
        self.data_dir = data_dir
        self.delay_ms = delay_ms
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.delayed = False  # netem delay in place both ways

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.node_ip}:{self.port}/0"

    def start(self) -> NamespacedRedis:
        try:
            _ip("netns", "add", self.namespace)
            _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.node_end)
            _ip("link", "set", self.node_end, "netns", self.namespace)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_end)
            _ip("link", "set", self.host_end, "up")
            inside = ("netns", "exec", self.namespace, "ip")
            _ip(*inside, "addr", "add", f"{self.node_ip}/30", "dev", self.node_end)
            _ip(*inside, "link", "set", self.node_end, "up")
            _ip(*inside, "link", "set", "lo", "up")
            self.delayed = self._delay(*inside[:3]) and self._delay()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            config = self.data_dir / "auth.conf"
            config.write_text(f'requirepass "{self.password}"\n')
            config.chmod(0o600)
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, str(find_redis_server()), str(config),
                 "--port", str(self.port), "--bind", self.node_ip, "--save", "",
                 "--appendonly", "no", "--dir", str(self.data_dir),
                 "--logfile", str(self.data_dir / "redis.log")],
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _delay(self, *in_namespace: str) -> bool:
        """Add `delay_ms` on the veth end (the node's with `in_namespace`); False where this
        kernel has no netem qdisc (the node is then a hop away without added delay)."""
        device = self.node_end if in_namespace else self.host_end
        prefix = ["ip", *in_namespace] if in_namespace else []
        added = subprocess.run(
            [*prefix, "tc", "qdisc", "add", "dev", device, "root", "netem", "delay",
             f"{self.delay_ms}ms"],
            capture_output=True, timeout=10,
        )  # fmt: skip
        return added.returncode == 0

    def _wait_ready(self, timeout_s: float = 15.0) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def round_trip_ms(self) -> float:
        """One PING's round trip as the host sees it (about twice the delay)."""
        client = redis.Redis.from_url(self.url)
        try:
            client.ping()
            start = time.perf_counter()
            client.ping()
            return (time.perf_counter() - start) * 1000
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        # Deleting the namespace takes its veth end, and with it the host's end.
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_end], capture_output=True, timeout=10)

    def __enter__(self) -> NamespacedRedis:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
