"""Strangers against galleries of 10 to 1,000 identities: FPIR, FNIR and the impostor table.

Reads clips of people who are in no gallery (`--videos`: video files, or folders of frames in
order; default tests/data/strangers) and the labelled photos (tests/data/faces). Every face
goes through the engine (detect, align, embed, quality); faces of one clip are linked into
tracks by box overlap (a track is one person's visit). Two faces are different people when they
come from different clips (clips in SAME_PEOPLE share people, so none of their pairs count) or
are photos of different labelled people.

- Impostor table: for each quality tier (recognizer/quality.py: faces passing the gate, good or
  weak views), the mean, sd, highest score and the measured FAR(t) of all different-person
  pairs; `--table` prints it as recognizer/openset.py's IMPOSTORS.
- Modelled FPIR: at gallery sizes N = 10, 100 and 1,000, the threshold the matcher derives from
  `match.target_fpir`, and FPIR(N) = 1 − (1 − FAR(t))^N with the measured FAR(t) (0 pairs
  above t reads as "under 1/pairs").
- Direct check: galleries of N strangers (one face of each other person of the other clips;
  N is capped at the people the data has) matched with the default config. FPIR per face:
  the share of strangers' faces that get a name; per visit: the share of tracks that
  tracks.py's vote would name (see `vote`).
- Genuine, new identities: each track with at least 12 gate-passing frames is enrolled from its
  first 1 and 3 such frames into the same stranger galleries, then probed with its frames from
  10 frames after the last enrolled one; the bundled photos' five people are enrolled from
  train/ and probed with their test photos. FNIR: share of probes not named right; wrong:
  named someone else.

The figures are of the development data the defaults were chosen on (docs/accuracy.md).

Usage: python benchmarks/accuracy.py [--videos DIR] [--out benchmarks/results/accuracy.json]
       [--table]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facestream.config import Settings  # noqa: E402
from facestream.recognizer import FaceEngine, Matcher, embed_photos  # noqa: E402
from facestream.recognizer.openset import IMPOSTORS, fpir  # noqa: E402
from facestream.recognizer.quality import GATED, gate, tier  # noqa: E402
from facestream.schemas import FaceQuality, Identity  # noqa: E402

FACES = REPO / "tests" / "data" / "faces"
VIDEO_SUFFIXES = {".gif", ".mp4", ".avi", ".mkv", ".mov"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
#: Clips that show the same people (Intel's two corridor walks), by file or folder stem.
SAME_PEOPLE = {
    "face-demographics-walking": "corridor",
    "face-demographics-walking-and-pause": "corridor",
}
SIZES = (10, 100, 1000)
DEFAULTS = Settings()
#: Before issue 17: one fixed threshold, no quality gate.
BEFORE = Settings(
    match={
        "target_fpir": None,
        "quality": {"min_iod": 0, "max_yaw": 90, "max_pitch": 90, "min_sharpness": 0},
        "enrol": {"min_iod": 0, "max_yaw": 90, "max_pitch": 90, "min_sharpness": 0},
    }
)
SEED = 17


@dataclass
class Seen:
    """One detected face of the development data."""

    group: str  # faces of different groups are different people (photos: per person)
    person: str | None  # clip track or labelled name; None: unknown which person
    frame: int
    quality: FaceQuality
    embedding: NDArray[np.float32]
    enrolment: bool = False  # a photo of train/ (enrolled, not probed)


def frames(path: Path) -> Iterator[NDArray[np.uint8]]:
    """The frames of a video file or of a folder of images (in name order)."""
    if path.is_dir():
        for image in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            decoded = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if decoded is not None:
                yield np.asarray(decoded, np.uint8)
        return
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, image = capture.read()
        if not ok:
            break
        yield np.asarray(image, np.uint8)
    capture.release()


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def clip_faces(engine: FaceEngine, path: Path, gap: int) -> list[Seen]:
    """Every face of a clip, linked into tracks by overlap with the last box (within `gap`)."""
    group = SAME_PEOPLE.get(path.stem, path.stem)
    tracks: list[tuple[tuple[float, ...], int, int]] = []  # last box, last frame, id
    seen = []
    for index, image in enumerate(frames(path)):
        detections, embeddings, views = engine.embed_views(image)
        for detection, embedding, view in zip(detections, embeddings, views, strict=True):
            near = [
                (i, _iou(box, detection.box))
                for i, (box, last, _) in enumerate(tracks)
                if index - last <= gap
            ]
            best = max(near, key=lambda item: item[1], default=(None, 0.0))
            if best[0] is None or best[1] < 0.2:
                tracks.append((detection.box, index, len(tracks)))
                track = len(tracks) - 1
            else:
                track = best[0]
                tracks[track] = (detection.box, index, tracks[track][2])
            person = f"{path.stem}:{tracks[track][2]}"
            seen.append(Seen(group, person, index, view, embedding))
    return seen


def photo_faces(engine: FaceEngine) -> list[Seen]:
    labels: dict[str, list[str]] = json.loads((FACES / "labels.json").read_text())
    seen = []
    for photo in sorted(p for p in FACES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = str(photo.relative_to(FACES))
        names = [relative.split("/")[1]] if relative.startswith("train/") else labels[relative]
        image = np.asarray(cv2.imread(str(photo), cv2.IMREAD_COLOR), np.uint8)
        _, embeddings, views = engine.embed_views(image)
        for embedding, view in zip(embeddings, views, strict=True):
            person = names[0] if len(names) == 1 else None  # which face is whose: unknown
            seen.append(
                Seen(f"photo:{person}", person, 0, view, embedding, relative.startswith("train/"))
            )
    return seen


def impostor_table(faces: list[Seen], settings: Settings) -> dict[str, dict[str, object]]:
    """Per tier: the different-person pairs' statistics and measured FAR(t)."""
    quality = settings.match.quality
    usable = [f for f in faces if f.person is not None and gate(f.quality, quality) is None]
    unit = np.stack([f.embedding for f in usable])
    scores = unit @ unit.T
    good = np.array([tier(f.quality, quality) == "good" for f in usable])
    groups = np.array([f.group for f in usable])
    upper = np.triu(np.ones(scores.shape, dtype=bool), 1)
    different = upper & (groups[:, None] != groups[None, :])
    tables: dict[str, dict[str, object]] = {}
    for name, mask in (
        ("good", good[:, None] & good[None, :]),
        ("weak", ~(good[:, None] & good[None, :])),
    ):
        pairs = scores[different & mask]
        people = {f.person for f, g in zip(usable, good, strict=True) if g == (name == "good")}
        tail = [
            (round(t, 2), round(float(np.mean(pairs >= t)), 4))
            for t in np.arange(0.2, 0.8, 0.02)
            if int(np.sum(pairs >= t)) >= 10
        ]
        tables[name] = {
            "pairs": int(pairs.size),
            "faces": int(mask.diagonal().sum()),
            "people": len(people),
            "mean": round(float(pairs.mean()), 4),
            "sd": round(float(pairs.std()), 4),
            "highest": round(float(pairs.max()), 3),
            "tail": tail,
            "scores": pairs,
        }
    return tables


Verdict = tuple[str | None, float, bool, str | None]  # name, similarity, gated, candidate


def vote(frames_named: list[Verdict], settings: Settings) -> list[str | None]:
    """The name tracks.py's vote shows on each frame of one track (None: no name).

    A frame at `tracks.instant_similarity` names a new track at once; otherwise a choice needs
    `tracks.min_votes` agreeing frames and more than half of the votes; gated frames cast none,
    and a frame whose candidate is the track's name votes for it (keeping a name).
    """
    votes: dict[str, int] = {}
    shown: str | None = None
    settled = False
    out = []
    for identity, similarity, gated, candidate in frames_named:
        if not gated:
            choice = identity or ""
            if not choice and settled and candidate == shown:
                choice = candidate or ""
            votes[choice] = votes.get(choice, 0) + 1
            if (
                not settled
                and identity is not None
                and similarity >= settings.tracks.instant_similarity
            ):
                settled, shown = True, identity
            else:
                leader = max(votes, key=lambda k: votes[k])
                count = votes[leader]
                if count >= settings.tracks.min_votes and count * 2 > sum(votes.values()):
                    settled, shown = True, leader or None
        out.append(shown if settled else None)
    return out


def identity(name: str, embeddings: Sequence[NDArray[np.float32]], model: str) -> Identity:
    return Identity(
        name=name,
        model=model,
        embeddings=[e.tolist() for e in embeddings],
        enrolled_at=int(time.time() * 1000),
    )


def stranger_gallery(
    pool: list[Seen], size: int, exclude: str, model: str, rng: random.Random
) -> list[Identity]:
    """Up to `size` identities, each one face of a different stranger outside group `exclude`.

    One face per person, its largest view (what one would enrol): two faces of one person as
    two identities would make every match of that person ambiguous (the margin), hiding false
    accepts instead of measuring them.
    """
    people: dict[str, list[Seen]] = {}
    for face in pool:
        if face.group != exclude and face.person is not None:
            people.setdefault(face.person, []).append(face)
    chosen = rng.sample(sorted(people), min(size, len(people)))
    best = {person: max(people[person], key=lambda f: f.quality.iod) for person in chosen}
    return [
        identity(f"stranger-{i}", [best[person].embedding], model)
        for i, person in enumerate(chosen)
    ]


def verdicts(matcher: Matcher, faces: list[Seen]) -> list[Verdict]:
    if not faces:
        return []
    matches = matcher.match(np.stack([f.embedding for f in faces]), [f.quality for f in faces])
    return [(m.identity, m.similarity or -1.0, m.reason in GATED, m.candidate) for m in matches]


def strangers(
    faces: list[Seen], pool: list[Seen], settings: Settings, model: str
) -> list[dict[str, object]]:
    """FPIR per face and per visit against galleries of strangers, per gallery size."""
    rows = []
    clips = sorted({f.group for f in faces})
    for size in SIZES:
        rng = random.Random(SEED)
        named = total = visits_named = visits = gallery_sizes = 0
        thresholds: dict[str, float] = {}
        for group in clips:
            gallery = stranger_gallery(pool, size, group, model, rng)
            matcher = Matcher.from_settings(gallery, settings.match)
            thresholds = dict(matcher.thresholds)
            probes = [f for f in faces if f.group == group]
            outcome = verdicts(matcher, probes)
            named += sum(verdict[0] is not None for verdict in outcome)
            total += len(outcome)
            for person in sorted({f.person for f in probes if f.person}):
                frames_of = [v for f, v in zip(probes, outcome, strict=True) if f.person == person]
                visits += 1
                visits_named += any(vote(frames_of, settings))
            gallery_sizes = max(gallery_sizes, len(gallery))
        rows.append(
            {
                "N": size,
                "gallery": gallery_sizes,
                "thresholds": thresholds,
                "faces": total,
                "faces_named": named,
                "fpir_face": round(named / max(total, 1), 5),
                "visits": visits,
                "visits_named": visits_named,
                "fpir_visit": round(visits_named / max(visits, 1), 5),
            }
        )
    return rows


def genuine(
    faces: list[Seen], pool: list[Seen], photos: list[Seen], engine: FaceEngine, settings: Settings
) -> list[dict[str, object]]:
    """FNIR of new identities enrolled from 1 or 3 frames (clips) and of the bundled photos."""
    rows = []
    quality = DEFAULTS.match.quality  # the same tracks for every configuration compared
    people = sorted({f.person for f in faces if f.person})
    for size in SIZES:
        for shots in (1, 3):
            rng = random.Random(SEED)
            right = wrong = total = visits = visits_right = visits_wrong = shown_right = 0
            for person in people:
                track = [f for f in faces if f.person == person]
                passing = [f for f in track if gate(f.quality, quality) is None]
                if len(passing) < 12:
                    continue
                enrolled = passing[:shots]
                probes = [f for f in track if f.frame >= enrolled[-1].frame + 10]
                gallery = stranger_gallery(pool, size - 1, track[0].group, engine.model_id, rng)
                gallery.append(identity("me", [f.embedding for f in enrolled], engine.model_id))
                outcome = verdicts(Matcher.from_settings(gallery, settings.match), probes)
                right += sum(verdict[0] == "me" for verdict in outcome)
                wrong += sum(verdict[0] not in (None, "me") for verdict in outcome)
                total += len(outcome)
                visits += 1
                shown = vote(outcome, settings)
                shown_right += sum(name == "me" for name in shown)
                visits_right += "me" in shown
                visits_wrong += any(name not in (None, "me") for name in shown)
            rows.append(
                {
                    "what": f"clip tracks, enrolled from {shots} frame(s)",
                    "N": size,
                    "probes": total,
                    "fnir_face": round(1 - right / max(total, 1), 4),
                    "wrong": wrong,
                    "frames_shown_right": round(shown_right / max(total, 1), 4),
                    "visits": visits,
                    "fnir_visit": round(1 - visits_right / max(visits, 1), 4),
                    "visits_wrong": visits_wrong,
                }
            )
        rng = random.Random(SEED)
        labelled = sorted(p.name for p in (FACES / "train").iterdir() if p.is_dir())
        gallery = stranger_gallery(pool, size - len(labelled), "photo", engine.model_id, rng)
        gallery += [
            embed_photos(engine, n, sorted((FACES / "train" / n).iterdir())) for n in labelled
        ]
        test = [f for f in photos if not f.enrolment and f.person in labelled]
        outcome = verdicts(Matcher.from_settings(gallery, settings.match), test)
        right = sum(v[0] == f.person for f, v in zip(test, outcome, strict=True))
        wrong = sum(v[0] not in (None, f.person) for f, v in zip(test, outcome, strict=True))
        rows.append(
            {
                "what": "bundled photos (test/, extra/), enrolled from train/",
                "N": len(gallery),
                "probes": len(test),
                "fnir_face": round(1 - right / max(len(test), 1), 4),
                "wrong": wrong,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=REPO / "tests" / "data" / "strangers")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/accuracy.json")
    parser.add_argument("--table", action="store_true", help="Print openset.IMPOSTORS.")
    args = parser.parse_args()
    settings = Settings()
    models = settings.models.model_copy(update={"cache_dir": Path(tempfile.gettempdir())})
    engine = FaceEngine.from_settings(models, settings.match.enrol)
    sources = sorted(
        p for p in args.videos.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES
    )
    gap = 1 if all(p.is_dir() for p in sources) else 5  # frame folders are sparse samples
    faces = [face for source in sources for face in clip_faces(engine, source, gap)]
    photos = photo_faces(engine)
    tables = impostor_table(faces + photos, settings)
    quality = settings.match.quality
    pool = faces  # any stranger's face is a fair impostor template, gated or not
    report = {
        "videos": str(args.videos),
        "faces": len(faces),
        "faces_passing_gate": sum(gate(f.quality, quality) is None for f in faces),
        "impostors": {k: {n: v for n, v in t.items() if n != "scores"} for k, t in tables.items()},
        "modelled": modelled(tables, settings),
        "strangers": strangers(faces, pool, settings, engine.model_id),
        "genuine": genuine(faces, pool, photos, engine, settings),
        # The operating point before issue 17, on the same faces and galleries.
        "fixed_0.363_strangers": strangers(faces, pool, BEFORE, engine.model_id),
        "fixed_0.363_genuine": genuine(faces, pool, photos, engine, BEFORE),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "impostors"}, indent=1))
    if args.table:
        for name, table in report["impostors"].items():  # type: ignore[union-attr]
            print(name, table)


def modelled(tables: dict[str, dict[str, object]], settings: Settings) -> list[dict[str, object]]:
    """FPIR(N) = 1 − (1 − FAR(t))^N at the derived thresholds, modelled and as measured."""
    rows = []
    for size in SIZES:
        for name, table in tables.items():
            scores: NDArray[np.float32] = table["scores"]  # type: ignore[assignment]
            matcher_threshold = max(
                settings.match.threshold,
                IMPOSTORS[name].threshold_for(  # type: ignore[index]
                    1 - (1 - (settings.match.target_fpir or 1.0)) ** (1 / size)
                ),
            )
            measured = float(np.mean(scores >= matcher_threshold))
            rows.append(
                {
                    "N": size,
                    "tier": name,
                    "threshold": matcher_threshold,
                    "far_modelled": IMPOSTORS[name].far(matcher_threshold),  # type: ignore[index]
                    "fpir_modelled": round(
                        fpir(IMPOSTORS[name].far(matcher_threshold), size),  # type: ignore[index]
                        5,
                    ),
                    "far_measured": measured,
                    "pairs": int(scores.size),
                    "fpir_measured": round(fpir(measured, size), 5) if measured < 1 else 1.0,
                }
            )
    return rows


if __name__ == "__main__":
    main()
