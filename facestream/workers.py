"""Run recogniser workers: one in this process, or N child processes under a supervisor."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Sequence
from types import FrameType

import orjson
import structlog
from prometheus_client import start_http_server

from facestream.recognizer import FaceEngine, VisitorBook, Worker

from .config import Settings
from .connect import connect
from .logs import configure_logging

__all__ = ["run_worker", "run_workers"]

log = structlog.get_logger("workers")


def run_worker(
    settings: Settings, consumer: str | None = None, metrics_port: int | None = None
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
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    name = consumer or settings.worker.consumer or f"{socket.gethostname()}-{os.getpid()}"
    engine = FaceEngine.from_settings(settings.models, settings.match)
    client = connect(settings.redis)
    worker = Worker(
        client,
        engine,
        settings.worker,
        settings.match,
        settings.limits,
        consumer=name,
        groups=settings.groups,
        visitors=VisitorBook(client, settings.visitors) if settings.visitors.enabled else None,
    )
    worker.run(stop)


def _child(settings_json: str, index: int) -> None:
    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log, process=f"worker-{index}")
    port = settings.worker.metrics_port
    consumer = settings.worker.consumer
    run_worker(
        settings,
        consumer=f"{consumer}-{index}" if consumer else None,
        metrics_port=port + index if port else None,
    )


def run_workers(settings: Settings, concurrency: int) -> int:
    """Start `concurrency` worker processes, forward SIGTERM/SIGINT, return the exit code."""
    if concurrency == 1:
        run_worker(settings, metrics_port=settings.worker.metrics_port)
        return 0
    context = multiprocessing.get_context("spawn")
    payload = _settings_json(settings)
    children: Sequence[multiprocessing.process.BaseProcess] = [
        context.Process(target=_child, args=(payload, index), name=f"worker-{index}")
        for index in range(concurrency)
    ]
    stopping = threading.Event()

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.start()
    log.info("workers started", count=concurrency, pids=[c.pid for c in children])
    for child in children:
        child.join()
    codes = [child.exitcode for child in children]
    failed = [code for code in codes if code not in (0, None)]
    if failed and not stopping.is_set():
        log.error("worker processes failed", exit_codes=codes)
        return 1
    return 0


def _settings_json(settings: Settings) -> str:
    # Secrets must survive the trip to the child process, so they are revealed here only.
    data = settings.model_dump(mode="json")
    if settings.redis.password is not None:
        data["redis"]["password"] = settings.redis.password.get_secret_value()
    return orjson.dumps(data).decode()
