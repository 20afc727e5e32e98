"""Light processes stay light: status, tails, the page and the bridges load no model or OpenCV."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest
import redis

from facestream import ingest, recognizer
from facestream.schemas import Result, keys
from facestream.server import EmbeddedRedis

HEAVY = ("cv2", "onnx", "onnxruntime")

# Runs `python -m facestream ARGS…` and, whatever it exits with, writes the modules it loaded.
_PROBE = """
import atexit, os, runpy, sys
atexit.register(lambda: open(os.environ["LOADED_TO"], "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["facestream", *sys.argv[1:]]
runpy.run_module("facestream", run_name="__main__")
"""


def loaded_by(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    target = tmp_path / "loaded.txt"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env={**os.environ, "LOADED_TO": str(target)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done, set(target.read_text().split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in HEAVY)


@pytest.mark.parametrize("args", [("status", "--help"), ("results", "tail", "--help")])
def test_help_loads_no_model(tmp_path: Path, args: tuple[str, ...]) -> None:
    done, modules = loaded_by(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert "facestream.config" in modules  # the probe saw the command's own imports
    assert heavy(modules) == []


def test_status_and_results_tail_load_no_model(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    result = Result(
        frame_id="1-0", camera="c1", group="east", seq=1, ts=1, hash="0" * 32, cached=False,
        faces=[], model="m",
    )  # fmt: skip
    client.xadd(keys.results("east"), result.to_fields())  # type: ignore[arg-type]
    client.close()
    tail = ("results", "tail", "--group", "east", "--from-start", "--count", "1")
    done, modules = loaded_by(tmp_path, *tail, "--redis-url", redis_server.url)
    assert done.returncode == 0, done.stderr
    assert "c1" in done.stdout  # it read and printed the result
    assert heavy(modules) == []
    done, modules = loaded_by(tmp_path, "status", "--json", "--redis-url", redis_server.url)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["groups"][0]["group"] == "east"
    assert heavy(modules) == []


def heavy_after_import(module: str) -> list[str]:
    code = f"import sys, {module}; print(*sorted(m for m in sys.modules if m in {HEAVY}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(
    "module", ["facestream.web.app", "facestream.bridges.mqtt", "facestream.bridges.webhook"]
)
def test_the_page_and_the_bridges_load_no_model(module: str) -> None:
    assert heavy_after_import(module) == []


def test_the_worker_does_load_the_model() -> None:
    """The check can fail: a model process loads all three."""
    assert heavy_after_import("facestream.workers") == sorted(HEAVY)


@pytest.mark.parametrize("package", [recognizer, ingest])
def test_every_lazy_export_resolves(package: ModuleType) -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match=r"has no attribute 'Nope'$"):
        _ = package.Nope
