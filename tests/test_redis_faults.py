"""Redis faults on a real cluster: CLUSTERDOWN is "not now" for every role, a cluster gone is an
outage (logged seldom, no traceback, resumed, a clean stop), and the CLI says each in one line."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import cv2
import pytest
import yaml

from facestream.config import load_settings
from facestream.ingest import EncodedFrame, FramePublisher
from facestream.schemas import keys
from facestream.server import free_port
from tests.cluster_fixtures import require_cluster_support
from tests.servers.redis_nodes import ClusterProcess

from .helpers import FACES, http_status, wait_for

PHOTOS = sorted((FACES / "test").glob("*.jpg"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """3 masters and no replicas: a master killed leaves its slots without one (CLUSTERDOWN
    on every node) until it is restarted."""
    require_cluster_support()
    with ClusterProcess(
        masters=3,
        replicas=0,
        password=secrets.token_hex(16),
        node_timeout_ms=1000,
        parent_dir=tmp_path_factory.mktemp("faults"),
    ) as started:
        yield started


class _Lines:
    """Every line a child process writes to a pipe, read as it comes."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._reader.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def text(self) -> str:
        self._reader.join(timeout=10)
        return "".join(self.lines)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines."""
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]


def _config(tmp_path: Path, cluster: ClusterProcess, model_cache: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cluster": {"urls": cluster.urls},
                "models": {"cache_dir": str(model_cache)},
                "worker": {"block_ms": 200},
                "log": {"format": "json"},
            }
        )
    )
    path.chmod(0o600)
    return path


def _facestream(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facestream", "--config", str(config), *args]


def _state(cluster: ClusterProcess, port: int) -> str:
    info: Any = cluster.node_client(port).cluster("info")
    return str(info["cluster_state"])


def test_replay_rides_through_a_cluster_down(
    cluster: ClusterProcess, model_cache: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, cluster, model_cache)
    client = cluster.client()
    stream = keys.frames("east")
    client.delete(stream)
    home = cluster.master_for_key(stream)
    kept = {home, cluster.master_for_key(keys.GALLERY_VERSION)}
    victim = next(port for port in cluster.ports if port not in kept)  # neither's master
    frames = tmp_path / "frames"
    frames.mkdir()
    for photo in PHOTOS:
        shutil.copy(photo, frames / photo.name)
    replay = subprocess.Popen(
        _facestream(config, "replay", str(frames), "--group", "east", "--camera-id", "cam-east",
                    "--fps", "4", "--loop"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = _Lines(replay.stderr)
    try:
        wait_for(lambda: client.xlen(stream) >= 2, what="the replay's first frames")
        cluster.kill_master(victim)
        wait_for(lambda: _state(cluster, home) == "fail", what="the cluster to be down")
        wait_for(lambda: log.has("redis unavailable"), what="the replay to wait")
        # A one-shot command on a healthy master says "not now" (3), not "refused" (4).
        done = subprocess.run(
            _facestream(config, "gallery", "list"), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith("error: Redis cannot serve this now (The cluster is down")
        assert "Traceback" not in done.stderr
        # `status` shows what it can, names the member that is down, and exits 5 (partial).
        partial = subprocess.run(
            _facestream(config, "status", "--json"), capture_output=True, text=True, timeout=120
        )
        assert partial.returncode == 5, partial.stderr
        report = json.loads(partial.stdout)
        nodes = {n["node"]: n["up"] for n in report["nodes"]}
        assert nodes[f"cluster 127.0.0.1:{victim}"] is False
        assert [name for name, up in nodes.items() if not up] in (
            [f"cluster 127.0.0.1:{victim}"],
            ["cluster", f"cluster 127.0.0.1:{victim}"],  # its gallery's slot is served too
        )
        # The live masters' groups are listed; with slots uncovered each says why it is empty.
        east = next(g for g in report["groups"] if g["group"] == "east")
        assert "The cluster is down" in east["error"]
        # Nor may a group be deleted while a camera's health record could be on the dead one.
        refused = subprocess.run(
            _facestream(config, "group", "delete", "east", "--yes"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert f"cluster 127.0.0.1:{victim}" in refused.stderr and "unreachable" in refused.stderr
        cluster.restart(victim)
        wait_for(lambda: log.has("redis available again"), what="the replay to go on")
        resumed = client.xlen(stream)
        wait_for(lambda: client.xlen(stream) > resumed, what="frames after the outage")
    finally:
        replay.send_signal(signal.SIGINT)
        replay.wait(30)
        if not cluster.alive(victim):
            cluster.restart(victim)
    assert replay.returncode == 130  # interrupted by us, never 4
    records = log.records()
    assert "Traceback" not in log.text()
    waits = [r for r in records if r["event"] == "redis unavailable"]
    assert waits and all(r["level"] == "warning" for r in waits)
    assert "ClusterDownError" in waits[0]["error"]
    # Every frame the replay sent is in the stream once: none lost or doubled by the outage.
    seqs = [int(fields[b"seq"]) for _, fields in client.xrange(stream)]
    assert seqs == list(range(len(seqs)))
    client.close()


def test_a_worker_waits_out_the_whole_cluster_gone_and_stops_cleanly(
    cluster: ClusterProcess, model_cache: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, cluster, model_cache)
    settings = load_settings(config)
    client = cluster.client()
    worker = subprocess.Popen(
        _facestream(config, "worker"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log = _Lines(worker.stderr)
    heartbeat = keys.worker_heartbeat(f"{socket.gethostname()}-{worker.pid}")
    ports = list(cluster.ports)
    started = [worker]
    try:
        wait_for(lambda: client.exists(heartbeat), timeout_s=180, what="the worker to serve")
        client.close()
        for port in ports:
            cluster.kill(port)
        wait_for(lambda: log.has("redis unavailable"), what="the worker to see the outage")
        done = subprocess.run(
            _facestream(config, "status"), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith(
            "error: cannot reach Redis (Redis Cluster cannot be connected"
        )
        assert "Traceback" not in done.stderr
        # A worker started meanwhile waits for the cluster too (its client needs a slot map).
        late = subprocess.Popen(
            _facestream(config, "worker"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started.append(late)
        late_log = _Lines(late.stderr)
        wait_for(lambda: late_log.has("redis unavailable"), timeout_s=180, what="the late one")
        for port in ports[:-1]:
            cluster.restart(port, wait_healthy=False)
        cluster.restart(ports[-1])
        wait_for(lambda: log.has("redis available again"), what="the worker to be back")
        # It serves again (the nodes came back empty: it makes its consumer group anew).
        client = cluster.client()
        client.delete(keys.results("east"))  # whatever a node's snapshot kept
        photo = PHOTOS[0]
        height, width = cv2.imread(str(photo)).shape[:2]
        publisher = FramePublisher(client, "east", "cam-east", 100, settings.limits)
        publisher.publish(EncodedFrame(photo.read_bytes(), width, height))
        wait_for(lambda: client.xlen(keys.results("east")) == 1, what="a result after it")
        late_beat = keys.worker_heartbeat(f"{socket.gethostname()}-{late.pid}")
        wait_for(lambda: client.exists(late_beat), what="the late worker to serve")
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(60)
        for port in ports:
            if not cluster.alive(port):
                cluster.restart(port, wait_healthy=False)
    assert worker.returncode == 0
    assert late.returncode == 0
    assert "Traceback" not in late_log.text()
    assert late_log.has("redis available again")
    assert "Traceback" not in log.text()
    records = log.records()
    assert not [r for r in records if r["level"] in ("error", "critical")]
    waits = [r for r in records if r["event"] == "redis unavailable"]
    (back,) = [r for r in records if r["event"] == "redis available again"]
    assert all(r["level"] == "warning" for r in waits)
    assert "Redis Cluster cannot be connected" in waits[0]["error"]
    assert back["down_s"] > 0
    print(f"\nwhole cluster gone: {len(waits)} 'redis unavailable' lines for "
          f"{back['attempts']} attempts over {back['down_s']} s")  # fmt: skip
    assert len(waits) < back["attempts"]  # backed off: not one line per retry
    client.close()


def test_roles_started_while_the_whole_cluster_is_gone_wait_for_it(
    cluster: ClusterProcess, model_cache: Path, tmp_path: Path
) -> None:
    """A cluster client cannot be made before some node answers: replay, a tail and the page
    wait for the slot map as for any outage, and SIGTERM meanwhile exits 0."""
    config = _config(tmp_path, cluster, model_cache)
    frames = tmp_path / "frames"
    frames.mkdir()
    for photo in PHOTOS[:3]:
        shutil.copy(photo, frames / photo.name)
    ports = list(cluster.ports)
    with cluster.client() as client:
        client.delete(keys.frames("west"))
    for port in ports:
        cluster.kill(port)
    web_port = free_port()
    env = {**os.environ, "FACESTREAM_WEB__TOKEN": "a-token-for-the-cluster-outage-test"}
    started = {
        "replay": _facestream(config, "replay", str(frames), "--group", "west",
                              "--camera-id", "cam-west", "--fps", "0"),
        "tail": _facestream(config, "results", "tail", "--group", "west"),
        "web": _facestream(config, "web", "--port", str(web_port)),
    }  # fmt: skip
    roles = {
        name: subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        for name, args in started.items()
    }
    logs = {name: _Lines(process.stderr) for name, process in roles.items()}
    try:
        for name, log in logs.items():
            wait_for(lambda log=log: log.has("redis unavailable"), 120, f"{name} to wait")
        roles["tail"].send_signal(signal.SIGTERM)
        assert roles["tail"].wait(30) == 0, logs["tail"].text()
        for port in ports[:-1]:
            cluster.restart(port, wait_healthy=False)
        cluster.restart(ports[-1])
        assert roles["replay"].wait(120) == 0, logs["replay"].text()
        client = cluster.client()
        assert client.xlen(keys.frames("west")) == 3
        client.close()
        wait_for(lambda: http_status(f"http://127.0.0.1:{web_port}/healthz") == 200, 60, "page")
    finally:
        for process in roles.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(30) for name, process in roles.items()}
        for port in ports:
            if not cluster.alive(port):
                cluster.restart(port, wait_healthy=False)
    assert codes == dict.fromkeys(roles, 0)
    for name, log in logs.items():
        assert "Traceback" not in log.text(), name
        waits = [r for r in log.records() if r["event"] == "redis unavailable"]
        assert all(r["level"] == "warning" for r in waits), name
        assert "Redis Cluster cannot be connected" in waits[0]["error"], name
