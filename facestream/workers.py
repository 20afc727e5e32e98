"""Run recogniser workers: one in this process, or N child processes per node under a supervisor.

Each child serves one node of the topology (a Redis server and its groups, or a whole Redis
Cluster), so `--concurrency 2` on three nodes starts six processes.

The supervisor restarts a child that dies (with back-off) and stops them all on SIGTERM/SIGINT.
A child that meets an error no restart can fix exits with the CLI's code for it (a refused
password: EXIT_REFUSED, a missing model file: EXIT_INPUT); the supervisor then stops the others
and exits with that code too.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import orjson
import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff

from facestream.recognizer import FaceEngine, VisitorBook, Worker
from facestream.recognizer.metrics import RESTARTS
from facestream.schemas import FacestreamError

from .config import ConfigError, Settings
from .connect import connect_node
from .exit_codes import EXIT_INPUT, EXIT_REFUSED
from .health import Probe, serve_health
from .logs import configure_logging
from .outage import Outage
from .redis_errors import REDIS_ERRORS, Fault, classify, is_transient
from .topology import Node, Topology

__all__ = ["freeze_start_up_heap", "run_worker", "run_workers"]

# A child that ran this long before it died starts its back-off afresh.
_STABLE_S = 60.0

log = structlog.get_logger("workers")


def run_worker(
    settings: Settings,
    consumer: str | None = None,
    metrics_port: int | None = None,
    restarts: int = 0,
) -> None:
    """Serve frames in this process until SIGTERM/SIGINT (a second one stops at once)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)  # cold stop: the batch stays pending, is reclaimed
        log.info("stopping after the current batch", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    RESTARTS.set(restarts)
    # A round waits at most block_ms for frames, or the back-off cap (5 s) after an error.
    probe = Probe(stale_after_s=30 + settings.worker.block_ms / 1000)
    if metrics_port:
        serve_health(metrics_port, str(settings.metrics_address), probe)
    name = consumer or settings.worker.consumer or f"{socket.gethostname()}-{os.getpid()}"
    engine = FaceEngine.from_settings(settings.models)
    (node,) = Topology(settings).select([])  # run_workers hands each process one node
    client = _connect(node, stop, probe)
    if client is None:
        return  # stopped before Redis came back
    worker = Worker(
        client,
        engine,
        settings.worker,
        settings.match,
        settings.limits,
        consumer=name,
        groups=settings.groups,
        cameras=settings.cameras_by_group(),
        replica_wait=settings.redis.replica_wait(),
        visitors=VisitorBook(client, settings.visitors) if settings.visitors.enabled else None,
        tracks=settings.tracks,
    )

    def on_round(problem: str | None) -> None:
        probe.beat()
        probe.set_ready(problem)

    freeze_start_up_heap()
    worker.run(stop, on_round)


def freeze_start_up_heap() -> int:
    """Keep what start-up made (modules, schemas, models) out of every later collection.

    A worker's start-up leaves some 81,000 objects the collector tracks, and each full
    collection walked them all, 36–47 ms of CPU in `benchmarks/heap.py`'s runs, landing in
    whatever batch was running; frozen, one walks only what serving made since (0.02–0.03 ms
    after 100 frames served there). Garbage is collected first, so none is kept forever.
    Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _connect(node: Node, stop: threading.Event, probe: Probe) -> redis.Redis | None:
    """The node's client, once it can be made (None: stopped first).

    A plain client connects lazily, but a cluster client must read the slot map from a node
    first: a cluster none of whose nodes answers yet is an outage like any later one.
    """
    backoff = ExponentialWithJitterBackoff(base=0.1, cap=5.0)
    outage = Outage(log, node=node.name)
    while True:
        try:
            client = connect_node(node)
        except REDIS_ERRORS as exc:
            if not is_transient(exc):
                raise
            delay = backoff.compute(outage.failures + 1)
            outage.failed(exc, delay)
            probe.beat()
            probe.set_ready(f"redis unavailable: {exc}")
            if stop.wait(delay):
                return None
            continue
        outage.recovered()
        return client


def _child(settings_json: str, index: int, restarts: int) -> None:
    # Its own process group: a Ctrl-C on the terminal reaches the supervisor only, which
    # forwards it once (twice would be a cold stop).
    os.setpgid(0, 0)
    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log, process=f"worker-{index}")
    port = settings.worker.metrics_port
    consumer = settings.worker.consumer
    try:
        run_worker(
            settings,
            consumer=f"{consumer}-{index}" if consumer else None,
            metrics_port=port + index if port else None,
            restarts=restarts,
        )
    except REDIS_ERRORS as exc:
        if classify(exc) is not Fault.CREDENTIALS:
            raise  # the supervisor restarts it with back-off
        print(f"error: authentication failed ({exc})", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None
    except FacestreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_INPUT) from None


class _Supervisor:
    """Keeps one worker process per given settings (one node's each) running until stopped."""

    def __init__(self, plan: list[Settings]) -> None:
        self.payloads = [_settings_json(settings) for settings in plan]
        count = len(plan)
        self.context = get_context("spawn")
        self.children: list[BaseProcess] = []
        self.started_at = [0.0] * count
        self.restarts = [0] * count
        self.failures = [0] * count
        self.stopping = threading.Event()
        self.fatal: int | None = None  # the exit code of a child that failed for good
        self.backoff = ExponentialWithJitterBackoff(base=0.5, cap=30.0)

    def forward(self, signum: int, _frame: FrameType | None = None) -> None:
        self.stopping.set()
        for child in self.children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    def start(self, index: int) -> BaseProcess:
        child = self.context.Process(
            target=_child,
            args=(self.payloads[index], index, self.restarts[index]),
            name=f"worker-{index}",
        )
        child.start()
        if index < len(self.children):
            self.children[index] = child
        else:
            self.children.append(child)
        self.started_at[index] = time.monotonic()
        if self.stopping.is_set():  # the signal came while it was being started
            os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
        return child

    def run(self) -> int:
        for index in range(len(self.restarts)):
            self.start(index)
        log.info("workers started", count=len(self.children), pids=[c.pid for c in self.children])
        due: dict[int, float] = {}  # slot -> when to restart it
        while any(child.is_alive() for child in self.children) or (
            due and not self.stopping.is_set()
        ):
            timeout = max(0.0, min(due.values()) - time.monotonic()) if due else None
            alive = [c.sentinel for c in self.children if c.is_alive()]
            # The last child may have exited since the loop's test: waiting on no sentinel
            # without a timeout would block for ever.
            if alive or timeout is not None:
                ready = wait(alive, timeout=timeout)
                # A killed child's sentinel closes a moment before it can be reaped: join it,
                # or is_alive() below still says True and the next round reaps it unseen.
                for child in self.children:
                    if child.sentinel in ready:
                        child.join()
            now = time.monotonic()
            for index, child in enumerate(self.children):
                if child.is_alive() or index in due or self.stopping.is_set():
                    continue
                self._died(index, child, now, due)
            for index in [i for i, at in due.items() if at <= now and not self.stopping.is_set()]:
                del due[index]
                self.start(index)
        codes = [child.exitcode for child in self.children]
        log.info("workers stopped", exit_codes=codes)
        if self.fatal is not None:
            return self.fatal
        return 0 if all(self._stopped_cleanly(code) for code in codes) else 1

    def _stopped_cleanly(self, code: int | None) -> bool:
        """0, or killed by the stop signal we forwarded before it had set its handler (a child
        still importing has read nothing, so it leaves nothing pending); once the handler is
        set, a second signal exits 128 + signum, which is not clean."""
        return code == 0 or (self.stopping.is_set() and code in (-signal.SIGTERM, -signal.SIGINT))

    def _died(self, index: int, child: BaseProcess, now: float, due: dict[int, float]) -> None:
        if child.exitcode in (EXIT_INPUT, EXIT_REFUSED):
            log.error("worker process failed for good; stopping", slot=index, pid=child.pid)
            self.fatal = child.exitcode
            self.forward(signal.SIGTERM)
            return
        lived = now - self.started_at[index]
        self.failures[index] = 1 if lived >= _STABLE_S else self.failures[index] + 1
        self.restarts[index] += 1
        delay = self.backoff.compute(self.failures[index])
        log.error(
            "worker process died; restarting",
            slot=index,
            pid=child.pid,
            exit_code=child.exitcode,
            restarts=self.restarts[index],
            restart_in_s=round(delay, 2),
        )
        due[index] = now + delay


def run_workers(settings: Settings, concurrency: int, nodes: Sequence[str] = ()) -> int:
    """Start `concurrency` worker processes for each node (all, or those named), restart any
    that dies, return the exit code."""
    plan = [
        node_settings
        for node_settings in _node_settings(settings, nodes)
        for _ in range(concurrency)
    ]
    if len(plan) == 1:
        run_worker(plan[0], metrics_port=settings.worker.metrics_port)
        return 0
    supervisor = _Supervisor(plan)
    signal.signal(signal.SIGTERM, supervisor.forward)
    signal.signal(signal.SIGINT, supervisor.forward)
    return supervisor.run()


def _node_settings(settings: Settings, names: Sequence[str]) -> list[Settings]:
    """One worker's settings per node to serve; a node left without groups is not served."""
    topology = Topology(settings)
    plan = []
    for node in topology.select(names):
        node_settings = topology.settings_for(node)
        if (node.groups or node.draining) and not node_settings.groups:
            continue  # --groups named none of this node's groups
        plan.append(node_settings)
    if not plan:
        raise ConfigError(
            f"no node holds the groups asked for ({', '.join(settings.groups)}); "
            "check --groups and the nodes' groups in the config"
        )
    return plan


def _settings_json(settings: Settings) -> str:
    # Secrets must survive the trip to the child process, so they are revealed here only.
    data = settings.model_dump(mode="json")
    if settings.redis.password is not None:
        data["redis"]["password"] = settings.redis.password.get_secret_value()
    return orjson.dumps(data).decode()
