"""What other local users cannot get at: the embedded server's files, a password on a command
line (a warning names password_file), the webhook's URL (from a file, not the command line)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import redis

from facestream.server import EmbeddedRedis

from .helpers import wait_for


def _modes(folder: Path) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in [folder, *folder.rglob("*")]
    }


def test_the_data_dir_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    (folder / "old.rdb").write_bytes(b"left by an older server")
    (folder / "old.rdb").chmod(0o644)
    with EmbeddedRedis(folder, appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.hset("fs:{gallery}:identities", "obama", "{}")
        client.save()  # an RDB next to the AOF: every file the server writes
        client.close()
        modes = _modes(folder)
    assert {"appendonlydir", "dump.rdb", "redis.log", "old.rdb"} <= set(modes), modes
    assert {name: mode for name, mode in modes.items() if Path(folder, name).is_dir()} == {
        name: 0o700 for name in modes if Path(folder, name).is_dir()
    }
    assert {mode for name, mode in modes.items() if not Path(folder, name).is_dir()} == {0o600}


def test_facestream_redis_data_dir_and_a_password_in_the_url(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    process = subprocess.Popen(
        [sys.executable, "-m", "facestream", "redis", "--data-dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        wait_for(lambda: (folder / "appendonlydir").exists(), 20, "the AOF folder")
        modes = _modes(folder)
        password = (folder / "password").read_text().strip()
        with_password = url.replace("redis://", f"redis://:{password}@")
        done = subprocess.run(
            [sys.executable, "-m", "facestream", "status", "--redis-url", with_password],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert modes["."] == 0o700 and modes["appendonlydir"] == 0o700
    assert {m for n, m in modes.items() if not (folder / n).is_dir()} == {0o600}, modes
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "warning: --redis-url holds a password, which every local user can read in `ps`; "
        "put it in a file and set redis.password_file (FACESTREAM_REDIS__PASSWORD_FILE)\n"
    )
    assert password not in done.stderr
    quiet = subprocess.run(
        [sys.executable, "-m", "facestream", "--redis-url", "redis://127.0.0.1:1/0", "status"],
        capture_output=True, text=True, timeout=60, env=os.environ,
    )  # fmt: skip
    assert "warning" not in quiet.stderr
