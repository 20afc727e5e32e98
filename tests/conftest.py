"""Fixtures: a real redis-server per session (flushed per test), the real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from facestream.config import Settings, load_settings
from facestream.recognizer import FaceEngine
from facestream.server import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server


@pytest.fixture()
def client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushall()
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture()
def settings(redis_server: EmbeddedRedis, model_cache: Path) -> Settings:
    return load_settings(
        redis={"url": redis_server.url},
        models={"cache_dir": model_cache},
        worker={"block_ms": 50, "claim_idle_ms": 500, "gallery_poll_s": 0.1},
    )


@pytest.fixture(scope="session")
def engine(model_cache: Path) -> FaceEngine:
    defaults = Settings()
    return FaceEngine.from_settings(defaults.models.model_copy(update={"cache_dir": model_cache}))
