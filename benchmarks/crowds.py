"""Crowds: faces found in large frames with and without the tiled search, and what it costs.

One synthetic crowd scene (tests/crowds.py: 60 of the bundled real faces pasted 24–48 px high
on a 1920×1080 canvas, as a 1080p camera sees a crowd) is seen at 640×360, 1280×720 and
1920×1080 (the same scene downscaled, as a camera of that width sees it), and the strangers'
frames (tests/data/strangers) are laid out as 1920×1080 mosaics. Each picture is detected with
the letterbox alone and with the tiled search; for each: detector runs and CPU milliseconds
per frame (one onnxruntime thread, process CPU time, median of `--repeat`), faces found of the
pasted ones, found twice, and false detections. "1 in N" is the per-frame cost of a video
camera at `models.tile_every` = N (one tiled frame, N − 1 letterboxed). Then `limits.max_faces`:
of the 1080p crowd's faces, how many that the quality gate would name are kept when the limit
keeps the best views, against keeping the largest boxes (before). Last, by face size: of 40
faces pasted in each band of heights on a 1920×1080 canvas, how many the letterbox and the
tiled search find (the letterbox's recall is why small faces' windows on tiled-size frames
are searched at full resolution, `recognizer/regions.py`), and for the faces the letterbox and
a detection of the whole canvas at full resolution both find, how far apart each puts the
eyes (the inter-ocular distance that `quality.min_iod` gates: median ratio letterbox ÷ full
resolution) and how many of them each would let past that gate.

Usage: python benchmarks/crowds.py [--repeat 5] [--out benchmarks/results/crowds.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facestream.config import Settings  # noqa: E402
from facestream.recognizer import FaceEngine, Matcher  # noqa: E402
from facestream.recognizer.detector import Detection, YuNetDetector  # noqa: E402
from facestream.recognizer.quality import gate, refusal  # noqa: E402
from facestream.recognizer.tracks import iou  # noqa: E402
from tests.crowds import (  # noqa: E402
    Box,
    count,
    crowd,
    heads,
    mosaic,
    read_image,
)

STRANGERS = REPO / "tests" / "data" / "strangers"
WIDTHS = (640, 1280, 1920)
MAX_FACES = 32


def cost(
    detector: YuNetDetector, image: NDArray[np.uint8], tiled: bool, repeat: int
) -> dict[str, float]:
    """Detector runs and median CPU milliseconds of one detection of `image`."""
    detector.detect(image, tiled=tiled)  # warm
    times = []
    runs = detector.runs
    for _ in range(repeat):
        start = time.process_time()
        detector.detect(image, tiled=tiled)
        times.append((time.process_time() - start) * 1000)
    return {"runs": (detector.runs - runs) / repeat, "cpu_ms": round(statistics.median(times), 1)}


def scene_rows(engine: FaceEngine, repeat: int) -> list[dict[str, object]]:
    scene = crowd(heads(engine))
    every = Settings().models.tile_every
    rows = []
    for width in WIDTHS:
        view = scene.resized(width)
        row: dict[str, object] = {"picture": f"crowd {width}×{view.image.shape[0]}"}
        row["faces"] = len(view.faces)
        for name, tiled in (("letterbox", False), ("tiled", True)):
            found, twice, false = count(engine.detector.detect(view.image, tiled=tiled), view.faces)
            row[name] = {"found": found, "twice": twice, "false": false} | cost(
                engine.detector, view.image, tiled, repeat
            )
        plain, tiled_row = row["letterbox"], row["tiled"]
        assert isinstance(plain, dict) and isinstance(tiled_row, dict)
        row[f"1 in {every}"] = {
            key: round((tiled_row[key] + (every - 1) * plain[key]) / every, 2)
            for key in ("runs", "cpu_ms")
        }
        rows.append(row)
    return rows


def mosaic_rows(engine: FaceEngine) -> list[dict[str, object]]:
    rows = []
    for clip in sorted(p for p in STRANGERS.iterdir() if p.is_dir()):
        image = mosaic([read_image(p) for p in sorted(clip.glob("*.jpg"))])
        rows.append(
            {
                "picture": f"mosaic {clip.name}",
                "letterbox": len(engine.detector.detect(image, tiled=False)),
                "tiled": len(engine.detector.detect(image, tiled=True)),
            }
        )
    return rows


SIZE_BANDS = ((24, 32), (32, 40), (40, 48), (48, 60), (60, 75), (75, 90))


def size_rows(engine: FaceEngine) -> list[dict[str, object]]:
    """Per band of face heights at 1080p (and at the letterbox's scale), faces found of 40,
    and the eyes' distance as the letterbox and full resolution measure it."""
    cut, scale = heads(engine), (engine.detector.input_size or 1920) / 1920
    quality = Settings().match.quality
    rows = []
    for low, high in SIZE_BANDS:
        scene = crowd(cut, count=40, face_px=(float(low), float(high)), seed=low)
        letterbox = engine.detector.detect(scene.image, tiled=False)
        found = {
            "letterbox": count(letterbox, scene.faces)[0],
            "tiled": count(engine.detector.detect(scene.image, tiled=True), scene.faces)[0],
        }
        # The native detector sees the whole canvas at its own size, as a window of it would.
        pairs = _same_faces(letterbox, engine.window_detector.detect(scene.image), scene.faces)
        ratios = [_iod(a) / _iod(b) for a, b in pairs]
        band = f"{low}-{high} px ({low * scale:.0f}-{high * scale:.0f} in the letterbox)"
        rows.append(
            {"faces": band, "of": len(scene.faces)}
            | found
            | {
                "both_found": len(pairs),
                "iod_ratio": round(statistics.median(ratios), 3) if ratios else None,
                # As the gate judges them: too small is the first reason it gives.
                "min_iod_passes": {
                    name: sum(
                        refusal(d.landmarks, d.score, quality) != "too_small"
                        for d in (pair[side] for pair in pairs)
                    )
                    for side, name in enumerate(("letterbox", "full_resolution"))
                },
            }
        )
    return rows


def _same_faces(
    first: list[Detection], second: list[Detection], truth: list[Box]
) -> list[tuple[Detection, Detection]]:
    """Per true face, the detection of each list that overlaps it best (IoU ≥ 0.3), where both
    have one."""
    pairs = []
    for face in truth:
        a, b = (
            max(found, key=lambda d: iou(d.box, face), default=None) for found in (first, second)
        )
        if a is not None and b is not None and min(iou(a.box, face), iou(b.box, face)) >= 0.3:
            pairs.append((a, b))
    return pairs


def _iod(detection: Detection) -> float:
    """Distance between the two eyes' landmarks, as quality.min_iod measures it."""
    return float(np.hypot(*(detection.landmarks[1] - detection.landmarks[0])))


def limit_rows(engine: FaceEngine) -> dict[str, int]:
    """Of the 1080p crowd's faces, how many the gate passes among the MAX_FACES kept."""
    scene = crowd(heads(engine), count=80, face_px=(20.0, 60.0), seed=1)
    settings = Settings().match
    matcher = Matcher.from_settings([], settings)
    everything = engine.recognise([scene.image], matcher)[0]
    kept = engine.recognise([scene.image], matcher, max_faces=MAX_FACES)[0]
    passing = {
        f.box
        for f in everything.faces
        if f.quality is not None and gate(f.quality, settings.quality) is None
    }
    largest = sorted(everything.faces, key=lambda f: -f.box[2] * f.box[3])[:MAX_FACES]
    return {
        "faces": len(everything.faces),
        "gate_passes": len(passing),
        "max_faces": MAX_FACES,
        "dropped": kept.dropped,
        "kept_passing_best_views": sum(f.box in passing for f in kept.faces),
        "kept_passing_largest": sum(f.box in passing for f in largest),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/crowds.json")
    args = parser.parse_args()
    engine = FaceEngine.from_settings(Settings().models)
    report = {
        "scene": scene_rows(engine, args.repeat),
        "mosaics": mosaic_rows(engine),
        "max_faces": limit_rows(engine),
        "sizes": size_rows(engine),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    every = Settings().models.tile_every
    columns = ("found", "twice", "false", "runs", "cpu_ms")
    print("picture, faces | letterbox:", *columns, "| tiled:", *columns, f"| 1 in {every}:")
    for row in report["scene"]:
        cells = [row["picture"], row["faces"]]
        for name in ("letterbox", "tiled"):
            cells += ["|", *(row[name][c] for c in columns)]
        cells += ["|", row[f"1 in {every}"]["runs"], row[f"1 in {every}"]["cpu_ms"]]
        print(*cells)
    for row in report["mosaics"]:
        print(f"{row['picture']:<48} faces: letterbox {row['letterbox']}, tiled {row['tiled']}")
    print("max_faces:", json.dumps(report["max_faces"]))
    print(
        f"by size; iod: letterbox ÷ full resolution; min_iod ({Settings().match.quality.min_iod:g})"
    )
    for row in report["sizes"]:
        passes = row["min_iod_passes"]
        print(
            f"{row['faces']:<36} letterbox {row['letterbox']}/{row['of']}, tiled {row['tiled']}"
            f" | iod x{row['iod_ratio']} over {row['both_found']}, min_iod passes letterbox"
            f" {passes['letterbox']}, full resolution {passes['full_resolution']}"
        )


if __name__ == "__main__":
    main()
