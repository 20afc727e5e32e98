"""What OpenCV's thread pool costs a worker's image steps: its default size against one thread.

Prints a table and writes benchmarks/results/opencv_threads.json. A worker is sized in cores
by `models.threads`; OpenCV's own pool (resizes, colour conversions, warps) defaults to a
thread a core, and every wake-up of those threads is the worker's CPU. For each step a worker
runs on every detected frame, on a real photo scaled to the frame size: CPU and wall ms per
call, median of --repeats rounds of --calls calls, with the pool at OpenCV's default and at
one thread (what `FaceEngine.from_settings` now sets for `models.threads: 1`), interleaved.

Usage: python benchmarks/opencv_threads.py [--calls 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facestream.recognizer.embedder import align  # noqa: E402

PHOTO = REPO / "tests" / "data" / "faces" / "test" / "obama1.jpg"
# Five landmarks of a face about 60 px across in the 1080p frame (eyes, nose, mouth corners).
LANDMARKS = np.array([[940, 500], [980, 500], [960, 525], [945, 545], [975, 545]], np.float32)


def steps() -> dict[str, Callable[[], object]]:
    """The image steps of a detected frame, each on a frame of its size."""
    photo = np.asarray(cv2.imread(str(PHOTO), cv2.IMREAD_COLOR), np.uint8)
    full_hd = _sized(photo, (1920, 1080))
    room = _sized(photo, (768, 432))
    return {
        "letterbox 1920x1080 -> 640x360 (INTER_AREA)": lambda: cv2.resize(
            full_hd, (640, 360), interpolation=cv2.INTER_AREA
        ),
        "letterbox 768x432 -> 640x360 (INTER_AREA)": lambda: cv2.resize(
            room, (640, 360), interpolation=cv2.INTER_AREA
        ),
        "grey 1920x1080": lambda: cv2.cvtColor(full_hd, cv2.COLOR_BGR2GRAY),
        "align a face to 112x112 (embedder.align)": lambda: align(full_hd, LANDMARKS),
    }


def _sized(image: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.uint8]:
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), np.uint8)


def measure(step: Callable[[], object], calls: int) -> tuple[float, float]:
    """CPU and wall ms per call."""
    for _ in range(3):
        step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        step()
    return (time.process_time() - cpu) * 1000 / calls, (time.perf_counter() - wall) * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/opencv_threads.json")
    args = parser.parse_args()
    default = cv2.getNumThreads()
    pools = {f"default ({default} threads)": default, "one thread": 1}
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, step in steps().items():
        runs[name] = {pool: [] for pool in pools}
        for _ in range(args.repeats):
            for pool, threads in pools.items():
                cv2.setNumThreads(threads)
                runs[name][pool].append(measure(step, args.calls))
    cv2.setNumThreads(default)
    rows = []
    print(f"{'step':>46} {'pool':>20} {'CPU ms':>7} {'wall ms':>7}")
    for name, by_pool in runs.items():
        row: dict[str, object] = {"step": name}
        for pool, measured in by_pool.items():
            cpu = statistics.median(m[0] for m in measured)
            wall = statistics.median(m[1] for m in measured)
            row[pool] = {"cpu_ms": round(cpu, 3), "wall_ms": round(wall, 3)}
            print(f"{name:>46} {pool:>20} {cpu:>7.2f} {wall:>7.2f}")
        first, one = (row[pool] for pool in pools)
        row["cpu_default_over_one"] = round(first["cpu_ms"] / one["cpu_ms"], 2)  # type: ignore[index]
        rows.append(row)
    report = {
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "opencv_default_threads": default,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + "\n".join(f"{r['step']}: CPU x{r['cpu_default_over_one']}" for r in rows))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
