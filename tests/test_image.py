"""compose/Dockerfile without a Docker engine: its own RUN, ENTRYPOINT and CMD lines, run here.

Each stage gets a scratch folder standing for its `/` and a fresh venv standing for the base
image's Python; COPY, WORKDIR, ENV and USER are applied to those, and every RUN line is run
with `sh -c` as Docker would, from a working directory outside the checkout. A change to the
Dockerfile changes what this runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import REPO, require_system_dependency

DOCKERFILE = REPO / "compose" / "Dockerfile"
# Commands that change the machine's accounts: the user's home folder is made by this test.
_NOT_RUN_HERE = ("useradd",)
_MOUNT = re.compile(r"^--mount=(\S+)\s+")
# What a RUN may read from the environment here: the index settings, proxies, certificates.
_PASSED_ON = re.compile(
    r"^(PIP_.*|UV_.*|SSL_CERT_.*|REQUESTS_CA_BUNDLE|LANG|TMPDIR|.*_proxy)$", re.I
)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@dataclass
class Stage:
    """One FROM … stage being built in `root` (its `/`) with the venv `python` as its Python."""

    name: str
    root: Path
    python: Path
    workdir: str = "/"
    user: str = "root"
    env: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    copied_from_context: list[str] = field(default_factory=list)

    def path(self, container_path: str) -> Path:
        absolute = (
            container_path if container_path.startswith("/") else f"{self.workdir}/{container_path}"
        )
        return self.root / absolute.lstrip("/")

    @property
    def home(self) -> Path:
        return self.path("/root" if self.user == "root" else f"/home/{self.user}")

    def environment(self, mounts: list[str]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if _PASSED_ON.match(key)}
        env.pop("PIP_NO_CACHE_DIR", None)
        env.update(self.env)
        env["PATH"] = f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin"
        env["HOME"] = str(self.home)
        if any(mount.endswith(".cache/pip") for mount in mounts):
            # A build cache mount keeps pip's cache out of the layers; here it is the user's own.
            env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or str(_user_cache() / "pip")
        return env


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _base_python(image: str) -> str:
    """An interpreter of the base image's Python version (`python:3.11-slim` -> 3.11)."""
    version = re.search(r"python:(\d+\.\d+)", image)
    assert version, f"FROM {image}: this test knows python:X.Y images only"
    if version[1] == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable
    found = shutil.which(f"python{version[1]}")
    require_system_dependency(found is not None, f"python{version[1]} (the image's Python)")
    assert found is not None
    return found


def _ignored() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [Path(line).name for line in lines if line.strip() and not line.startswith("#")]


def _copy(sources: list[Path], target: Path, into_folder: bool) -> None:
    for source in sources:
        assert source.exists(), f"COPY source {source} is missing"
        if source.is_dir():
            ignore = shutil.ignore_patterns(*_ignored())
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            destination = target / source.name if into_folder else target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _run(stage: Stage, arguments: str) -> None:
    mounts = []
    while match := _MOUNT.match(arguments):
        mounts.append(dict(part.split("=", 1) for part in match[1].split(","))["target"])
        arguments = arguments[match.end() :]
    if arguments.split()[0] in _NOT_RUN_HERE:
        stage.skipped.append(arguments)
        return
    for command in _NOT_RUN_HERE:  # never run one here by accident, chained after another
        assert not re.search(rf"\b{command}\b", arguments), f"give `{command}` a RUN of its own"
    cwd = stage.path(stage.workdir)
    result = subprocess.run(
        ["sh", "-c", arguments],
        cwd=cwd,
        env=stage.environment(mounts),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (
        f"RUN {arguments}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )


def build(dockerfile: Path, scratch: Path) -> list[Stage]:
    """Carry out the Dockerfile's instructions under `scratch`; returns the stages built."""
    stages: list[Stage] = []
    for keyword, arguments in instructions(dockerfile.read_text()):
        if keyword == "FROM":
            name = arguments.split()[-1] if " AS " in arguments.upper() else str(len(stages))
            root = scratch / f"stage-{name}"
            venv = scratch / f"python-{name}"
            subprocess.run(
                [_base_python(arguments), "-m", "venv", str(venv)], check=True, timeout=300
            )
            stages.append(Stage(name, root, venv / "bin" / "python"))
            continue
        stage = stages[-1]
        if keyword == "WORKDIR":
            stage.workdir = str(Path(stage.workdir, arguments))
            stage.path(stage.workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = arguments.split()
            origin = next((s for s in sources if s.startswith("--from=")), None)
            if origin:
                sources.remove(origin)
                source_stage = next(s for s in stages if s.name == origin.split("=", 1)[1])
                paths = [source_stage.path(s) for s in sources]
            else:
                stage.copied_from_context += sources
                paths = [REPO / s for s in sources]
            into_folder = destination.endswith("/") or len(paths) > 1
            _copy(paths, stage.path(destination), into_folder)
        elif keyword == "RUN":
            _run(stage, arguments)
        elif keyword == "USER":
            stage.user = arguments
            stage.home.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            key, _, value = arguments.partition("=")
            # A path in the image is a path under the stage's root here.
            stage.env[key] = str(stage.path(value)) if value.startswith("/") else value
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = json.loads(arguments)
        elif keyword == "CMD":
            stage.cmd = json.loads(arguments)
        else:
            raise AssertionError(f"{keyword} is not handled by this test: teach it")
    return stages


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Stage:
    """The runtime stage of compose/Dockerfile, built once for this module."""
    stages = build(DOCKERFILE, tmp_path_factory.mktemp("image"))
    return stages[-1]


def _in_image(
    image: Stage, *command: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=image.path(image.workdir),
        env=image.environment([]),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _site_packages(image: Stage) -> Path:
    found = _in_image(
        image, "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
    )
    return Path(found.stdout.strip())


def test_runtime_stage_copies_no_source_and_runs_as_a_user(image: Stage) -> None:
    assert image.copied_from_context == ["constraints.txt"]
    assert image.user not in ("root", "0")
    assert any("useradd" in line and image.user in line for line in image.skipped)
    assert image.skipped == [line for line in image.skipped if line.split()[0] in _NOT_RUN_HERE]


def test_wheel_holds_every_file_of_the_package_folders(image: Stage) -> None:
    # Subpackages, the demo data, the web page's static files, py.typed: whatever the folders
    # hold, so a new subpackage or data folder that pyproject.toml does not name fails here.
    (wheel,) = image.root.rglob("facestream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    installed_as = {"facestream": "facestream", "schemas": "facestream/schemas"}
    installed_as |= {"ingest": "facestream/ingest", "recognizer": "facestream/recognizer"}
    expected = set()
    for folder, prefix in installed_as.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                expected.add(f"{prefix}/{path.relative_to(REPO / folder).as_posix()}")
    assert {"facestream/py.typed", "facestream/web/__init__.py"} <= expected
    assert sorted(expected - names) == []


def test_the_installed_package_is_imported_not_a_source_tree(image: Stage) -> None:
    script = (
        "import facestream.recognizer as r, facestream.schemas as s; print(r.__file__, s.__file__)"
    )
    result = _in_image(image, "python", "-c", script)
    assert result.returncode == 0, result.stderr
    site = _site_packages(image)
    for imported in result.stdout.split():
        assert Path(imported).is_relative_to(site), imported


def test_one_opencv_and_pip_check_is_clean(image: Stage) -> None:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"
    )
    installed: list[str] = json.loads(_in_image(image, "python", "-c", script).stdout)
    assert [name for name in installed if name.startswith("opencv")] == ["opencv-python-headless"]
    assert "insightface" not in installed and "scikit-image" not in installed
    check = _in_image(image, "python", "-m", "pip", "check")
    assert check.returncode == 0, check.stdout


def test_versions_are_the_constraints(image: Stage) -> None:
    pins = dict(
        line.split(";")[0].strip().split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith(" ")
    )
    script = "import importlib.metadata as m; print(m.version('numpy'), m.version('onnxruntime'))"
    numpy, onnxruntime = _in_image(image, "python", "-c", script).stdout.split()
    assert (numpy, onnxruntime) == (pins["numpy"], pins["onnxruntime"])


def test_models_are_folded_at_build_time_readable_by_any_user(image: Stage) -> None:
    cache = Path(image.env["FACESTREAM_MODELS__CACHE_DIR"])
    assert cache.is_relative_to(image.root)
    folded = sorted(cache.glob("*.onnx"))
    assert [p.name.split("_")[1] for p in folded] == ["detection", "recognition"]
    assert cache.stat().st_mode & 0o005 == 0o005  # any uid may enter the folder
    for path in folded:
        assert path.stat().st_mode & 0o004, f"{path} is not world-readable"


def test_entrypoint_and_cmd_run(image: Stage) -> None:
    result = _in_image(image, *image.entrypoint, *image.cmd)
    assert result.returncode == 0, result.stderr
    for role in ("worker", "camera", "demo"):
        assert role in result.stdout


def test_demo_runs_from_the_installed_wheel(image: Stage) -> None:
    result = _in_image(image, *image.entrypoint, "demo", timeout_s=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "embedded Redis" in result.stdout
