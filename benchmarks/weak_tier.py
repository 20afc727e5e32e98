"""What the weak-view threshold tier costs genuine names and saves strangers, on bundled data.

recognizer/openset.py judges a face that passes the gate but is not a good view (under
`quality.good_iod` or `quality.good_sharpness`) by a wider impostor model, estimated from few
people (5), so it needs a higher similarity. This runs the same faces with that tier and with
the good views' threshold for every face ("no weak tier"):

- genuine, on video: the synthetic walk of benchmarks/tracks.py (bundled real photos moved
  across a corridor, encoded as mp4v and decoded), every gate-passing face per frame, its
  truth the walker nearest to it (the bundled photos' five people enrolled from train/);
- genuine, photos: every face of the labelled test photos;
- strangers: every face of tests/data/strangers, each clip against a gallery of the five
  people plus every other clip's strangers' faces enrolled as identities.

Two galleries: the five people alone, and the five people with every clip's strangers' faces
(N ≈ 50: the thresholds rise with N). Per frame, without the track vote.

Usage: python benchmarks/weak_tier.py [--out benchmarks/results/weak_tier.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.tracks import WALKERS  # noqa: E402
from facestream.config import Settings  # noqa: E402
from facestream.recognizer import FaceEngine, Matcher  # noqa: E402
from facestream.recognizer.engine import decode_jpeg  # noqa: E402
from facestream.recognizer.quality import gate, tier  # noqa: E402
from facestream.schemas import FaceQuality, Identity  # noqa: E402
from tests.crowds import read_image  # noqa: E402
from tests.helpers import FACES, LABELS  # noqa: E402
from tests.strangers import CLIPS, people, stranger_identities  # noqa: E402
from tests.walks import record, render  # noqa: E402

SETTINGS = Settings()
WALK_FRAMES = 260
NEAR_PX = 80  # a face this close (|dx| + |dy|) to a walker's place is that walker's


def matcher(gallery: Sequence[Identity], weak_tier: bool) -> Matcher:
    decided = Matcher.from_settings(gallery, SETTINGS.match)
    if not weak_tier:
        decided.thresholds = {
            "good": decided.thresholds["good"],
            "weak": decided.thresholds["good"],
        }
    return decided


Seen = tuple[NDArray[np.float32], list[FaceQuality], list[str | None]]


def walk_faces(engine: FaceEngine) -> list[Seen]:
    """Each frame of the walk: embeddings, views and who each face is (None: unsure)."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = render(engine, [walker for walker, _ in WALKERS], WALK_FRAMES)
        jpegs = record(clip, Path(tmp) / "walk.mp4", 10)
    seen: list[Seen] = []
    for index, jpeg in enumerate(jpegs):
        detections, embeddings, views = engine.embed_views(decode_jpeg(jpeg))
        truths: list[str | None] = []
        for detection in detections:
            x, y, w, h = detection.box
            near = [
                (abs(at[0] - x - w / 2) + abs(at[1] - y - h / 2), name or "alex_lacamoire")
                for walker, name in WALKERS
                if (at := walker.at(index)) is not None
            ]
            distance, name = min(near, default=(float("inf"), None))
            truths.append(name if distance < NEAR_PX else None)
        seen.append((embeddings, views, truths))
    return seen


def verdict(identity: str | None, truth: Sequence[str]) -> str:
    return "unnamed" if identity is None else "right" if identity in truth else "wrong"


def walk_counts(decided: Matcher, walk: Sequence[Seen]) -> dict[str, int]:
    """Gate-passing faces of the walk named right, wrong or not at all, and the weak views."""
    counts = {"right": 0, "wrong": 0, "unnamed": 0, "weak views": 0}
    for embeddings, views, truths in walk:
        matches = decided.match(embeddings, views)
        for match, view, truth in zip(matches, views, truths, strict=True):
            if truth is None or gate(view, SETTINGS.match.quality) is not None:
                continue
            counts["weak views"] += tier(view, SETTINGS.match.quality) == "weak"
            counts[verdict(match.identity, [truth])] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/weak_tier.json")
    args = parser.parse_args()
    engine = FaceEngine.from_settings(SETTINGS.models)
    known, strangers = people(engine), stranger_identities(engine, SETTINGS)
    walk = walk_faces(engine)
    photos = [(engine.embed_views(read_image(FACES / rel)), names) for rel, names in LABELS.items()]
    clips = [
        (clip, [engine.embed_views(read_image(p)) for p in sorted(clip.glob("*.jpg"))])
        for clip in CLIPS
    ]
    rows = []
    for with_strangers in (False, True):
        for weak_tier in (True, False):
            gallery = known + strangers if with_strangers else known
            decided = matcher(gallery, weak_tier)
            photo_counts = {"right": 0, "wrong": 0, "unnamed": 0}
            for (_, embeddings, views), names in photos:
                for match in decided.match(embeddings, views):
                    photo_counts[verdict(match.identity, names)] += 1
            named = faces = 0
            for clip, frames in clips:
                others = [i for i in strangers if not i.name.startswith(clip.name[:20])]
                against = matcher(known + others if with_strangers else known, weak_tier)
                for _, embeddings, views in frames:
                    faces += len(views)
                    named += sum(m.identity is not None for m in against.match(embeddings, views))
            rows.append(
                {
                    "gallery": len(gallery),
                    "weak tier": weak_tier,
                    "thresholds": decided.thresholds,
                    "walk": walk_counts(decided, walk),
                    "photos": photo_counts,
                    "strangers named": named,
                    "stranger faces": faces,
                }
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "gallery | weak tier | thresholds | walk right/wrong/unnamed (weak views) | photos | "
        "strangers named"
    )
    for row in rows:
        walk_row, photo_row, thresholds = row["walk"], row["photos"], row["thresholds"]
        print(
            f"{row['gallery']} | {row['weak tier']} | {thresholds['good']}/{thresholds['weak']} | "
            f"{walk_row['right']}/{walk_row['wrong']}/{walk_row['unnamed']} "
            f"({walk_row['weak views']}) | "
            f"{photo_row['right']}/{photo_row['wrong']}/{photo_row['unnamed']} | "
            f"{row['strangers named']} of {row['stranger faces']}"
        )


if __name__ == "__main__":
    main()
