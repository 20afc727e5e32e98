"""The face engine: decode → detect → align → embed (batched across frames) → match."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from facestream.schemas import Face, FaceQuality, IdentitySource, InvalidFrame

from .detector import Detection, YuNetDetector
from .embedder import SFaceEmbedder, align
from .matcher import Match, Matcher
from .model_files import EMBEDDING_SIZE, current_model_id
from .models import SFACE, YUNET, create_session, prepare
from .quality import measure, rank, refusal
from .regions import Windows, detect_regions, refine_small, scan_scale
from .settings import EnrolSettings, ModelSettings, QualitySettings
from .views import FrameView

__all__ = [
    "EmbedPlan",
    "FaceEngine",
    "Need",
    "Recognition",
    "Regions",
    "current_model_id",
    "decode_jpeg",
    "label",
]

#: What a tracked image's tracks ask of one of its faces: "spare" it (its track knows who it
#: is), "embed" it unless the quality gate refuses it before alignment (it could be neither
#: named nor vote, and its track follows it by overlap), or "link": embed it even so (only its
#: embedding can tie it to the right track).
Need = Literal["embed", "spare", "link"]
#: Given an image's index in the batch and its faces, what its tracks need of each face; None:
#: the image is not tracked (every face is embedded).
EmbedPlan = Callable[[int, Sequence[Face]], Sequence[Need] | None]
#: Per image of a batch: the windows to detect in; None: all of it.
Regions = Sequence[Windows | None]


def decode_jpeg(data: bytes) -> NDArray[np.uint8]:
    """Decode an encoded image to BGR, or raise InvalidFrame saying it is not one."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InvalidFrame(f"image data ({len(data)} bytes) is not a decodable JPEG")
    return np.asarray(image, dtype=np.uint8)


@dataclass
class Recognition:
    """Faces found in one image and the milliseconds each stage took for it."""

    faces: list[Face]
    embeddings: NDArray[np.float32]
    latency_ms: dict[str, float] = field(default_factory=dict)
    dropped: int = 0  # faces found beyond max_faces, left out before they were embedded
    # Which faces were embedded (empty: all); the others' rows are zero, their identity unset.
    embedded: list[bool] = field(default_factory=list)
    detected: bool = True  # False: a still frame, its faces those of its tracks (not cached)
    # False: detected only in windows around its camera's tracks, so not cached (a scan of the
    # whole frame may find more, and the same image from elsewhere must get them).
    scanned: bool = True

    def was_embedded(self, index: int) -> bool:
        return not self.embedded or self.embedded[index]


class FaceEngine:
    """Owns the two model sessions; the gallery matcher comes with each call (it changes)."""

    def __init__(
        self,
        detector: YuNetDetector,
        embedder: SFaceEmbedder,
        enrol: EnrolSettings | None = None,
        tile_every: int = 1,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.enrol = enrol or EnrolSettings()  # the gate enrolment photos must pass
        self.tile_every = tile_every  # a video camera's frames searched in tiles: 1 in this many
        # The same network at each input's own size, for windows around tracked faces.
        self.window_detector = YuNetDetector(
            detector.session,
            input_size=None,
            score_threshold=detector.score_threshold,
            nms_threshold=detector.nms_threshold,
        )

    @classmethod
    def from_settings(cls, models: ModelSettings, enrol: EnrolSettings | None = None) -> FaceEngine:
        """Sessions for the configured models; `enrol` is the gate enrolment photos must pass.

        OpenCV's own thread pool (resizes, colour conversions, warps) gets `models.threads`
        too: at its default of a thread a core, its hand-offs cost the worker CPU (up to 1.7×
        one thread's for a step, `benchmarks/opencv_threads.py`; docs/performance.md).
        """
        cv2.setNumThreads(models.threads)
        detector = YuNetDetector(
            create_session(prepare(YUNET, models.source_dir, models.cache_dir), models.threads),
            input_size=models.detect_size,
            score_threshold=models.score_threshold,
            nms_threshold=models.nms_threshold,
            tile_above=models.tile_above,
            tile_overlap=models.tile_overlap_px,
        )
        embedder = SFaceEmbedder(
            create_session(prepare(SFACE, models.source_dir, models.cache_dir), models.threads),
            max_batch=models.max_batch,
        )
        return cls(detector, embedder, enrol, models.tile_every)

    @property
    def model_id(self) -> str:
        return current_model_id()

    def scans(self, seq: int, video: bool) -> bool:
        """Whether a frame gets the tiled search of a large frame: every photo does, a video
        camera's frame one in `tile_every` (by its sequence number, so no state is kept)."""
        return not video or seq % self.tile_every == 0

    def embed_faces(self, image: NDArray[np.uint8]) -> tuple[list[Detection], NDArray[np.float32]]:
        """Detections in one image and their embeddings (for enrolment and evaluation)."""
        detections, embeddings, _ = self.embed_views(image)
        return detections, embeddings

    def embed_views(
        self, image: NDArray[np.uint8], tiled: bool = True
    ) -> tuple[list[Detection], NDArray[np.float32], list[FaceQuality]]:
        """Detections in one image, their embeddings and the quality of each view (`tiled`:
        whether a large image is also searched in tiles)."""
        detections = self.detector.detect(image, tiled=tiled)
        crops = [align(image, d.landmarks) for d in detections]
        views = [measure(d.landmarks, d.score, c) for d, c in zip(detections, crops, strict=True)]
        return detections, self.embedder.embed(crops), views

    def recognise(
        self,
        images: Sequence[NDArray[np.uint8] | FrameView],
        matcher: Matcher,
        max_faces: int | None = None,
        plan: EmbedPlan | None = None,
        tiled: Sequence[bool] | None = None,
        regions: Regions | None = None,
    ) -> list[Recognition]:
        """Recognise several decoded images against `matcher`, embedding all their faces in one
        batch.

        With `max_faces`, an image keeps only its best views (quality.rank: faces the gate
        would refuse go first): a frame full of faces costs at most that many alignments and
        embeddings. With `plan`, a tracked image's faces are aligned and embedded as it says
        (`Need`): not those it spares (their tracks already know who they are), nor those to
        "embed" that the matcher's quality gate refuses before alignment (they get its reason,
        no similarity); those to "link" always.
        `tiled` says which images a large frame's tiled search may run on (default: all). A
        `FrameView` is detected at its reduced scale and decoded in full only when one of its
        faces is aligned. With `regions`, an image is detected only in its windows (at the full
        scan's scale, never tiled), unless a window that held a face finds none.
        """
        gate = matcher.quality or QualitySettings()
        recognitions: list[Recognition] = []
        detections: list[list[Detection]] = []
        crops: list[NDArray[np.uint8]] = []
        for index, given in enumerate(images):
            view = given if isinstance(given, FrameView) else FrameView.whole(given)
            start = time.perf_counter()
            windows = regions[index] if regions is not None else None
            found = []
            scale = scan_scale(view.frame_size, self.detector.input_size)
            if windows is not None:
                found = detect_regions(
                    self.window_detector, view, windows.boxes, scale, windows.full_res
                )
            scanned = windows is None or not windows.explained(found)
            if scanned:  # no windows, or a face missing from them: scan it all
                tiles = tiled is None or tiled[index]
                found = _rescaled(self.detector.detect(view.detect, tiled=tiles), view.scale)
                width, height = view.frame_size
                if not tiles and self.detector.tiles_for(height, width):
                    # A large frame between its tiled ones: its small faces as the tiles and
                    # the windows measure them, not as the letterbox's scaled-up points do.
                    found = refine_small(self.window_detector, view, found, scale)
            dropped = max(len(found) - max_faces, 0) if max_faces is not None else 0
            if dropped:
                found = _best(found, len(found) - dropped, gate)
            faces = [_face(detection) for detection in found]
            planned = plan(index, faces) if plan is not None else None
            wanted = [True] * len(found)
            if planned is not None:
                faces, wanted = _planned(faces, found, planned, matcher.quality)
            detect_ms = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            image = view.full() if any(wanted) else view.detect
            crops.extend(align(image, d.landmarks) for d, w in zip(found, wanted, strict=True) if w)
            align_ms = (time.perf_counter() - start) * 1000
            # issue 17: each embedded face carries its quality (size, sharpness, pose, score).
            faces = _with_quality(faces, found, wanted, crops[len(crops) - sum(wanted) :])
            detections.append(found)
            latency = {"detect": detect_ms, "align": align_ms}
            recognitions.append(
                Recognition(
                    faces, np.zeros((0, 0), np.float32), latency, dropped, wanted, scanned=scanned
                )
            )

        start = time.perf_counter()
        embeddings = self.embedder.embed(crops)
        embed_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        views = [
            f.quality for r in recognitions for f, w in zip(r.faces, r.embedded, strict=True) if w
        ]
        matches = matcher.match(embeddings, views)
        match_ms = (time.perf_counter() - start) * 1000

        # Batch-wide stages are charged to each image in proportion to its embedded faces.
        total_faces = max(len(crops), 1)
        cursor = 0
        for recognition in recognitions:
            count = sum(recognition.embedded)
            share = count / total_faces
            recognition.latency_ms["embed"] = embed_ms * share
            recognition.latency_ms["match"] = match_ms * share
            rows = np.zeros((len(recognition.faces), EMBEDDING_SIZE), dtype=np.float32)
            mask = np.array(recognition.embedded, dtype=bool)
            rows[mask] = embeddings[cursor : cursor + count]
            verdicts = iter(matches[cursor : cursor + count])
            recognition.embeddings = rows
            recognition.faces = label(
                recognition.faces,
                [
                    next(verdicts) if w else Match(None, None, face.unnamed_reason)
                    for face, w in zip(recognition.faces, recognition.embedded, strict=True)
                ],
            )
            cursor += count
        return recognitions


def label(
    faces: Sequence[Face], matches: Sequence[Match], source: IdentitySource = "model"
) -> list[Face]:
    """The faces with identity and similarity filled in from the matcher's verdicts."""
    return [
        face.model_copy(
            update={
                "identity": m.identity,
                "similarity": m.similarity,
                "source": source,
                "unnamed_reason": m.reason,
                "candidate": m.candidate,
            }
        )
        for face, m in zip(faces, matches, strict=True)
    ]


def _with_quality(
    faces: list[Face],
    found: Sequence[Detection],
    wanted: Sequence[bool],
    crops: Sequence[NDArray[np.uint8]],
) -> list[Face]:
    """The faces, each one embedded given the quality of its view (its crop, in order)."""
    views = iter(crops)
    return [
        face.model_copy(update={"quality": measure(d.landmarks, d.score, next(views))})
        if w
        else face
        for face, d, w in zip(faces, found, wanted, strict=True)
    ]


def _planned(
    faces: list[Face],
    found: Sequence[Detection],
    needs: Sequence[Need],
    gate: QualitySettings | None,
) -> tuple[list[Face], list[bool]]:
    """A tracked image's faces, those to "embed" that the gate refuses before alignment marked
    with its reason, and which faces to embed: neither those nor the spared ones. Embedding a
    face that could be neither named nor cast a vote cost a tracked camera most of its SFace
    runs (issue 19: all of them on a room's small faces) and, at reduced decode, the
    full-resolution decode of the frame for its crop."""
    reasons = [
        refusal(d.landmarks, d.score, gate) if gate is not None and need == "embed" else None
        for d, need in zip(found, needs, strict=True)
    ]
    marked = [
        face.model_copy(update={"unnamed_reason": reason}) if reason else face
        for face, reason in zip(faces, reasons, strict=True)
    ]
    wanted = [
        need != "spare" and reason is None for need, reason in zip(needs, reasons, strict=True)
    ]
    return marked, wanted


def _rescaled(detections: list[Detection], scale: float) -> list[Detection]:
    """Detections in a frame decoded at `scale`, in the full frame's pixels."""
    if scale == 1.0:
        return detections
    return [
        Detection(
            box=(d.box[0] / scale, d.box[1] / scale, d.box[2] / scale, d.box[3] / scale),
            landmarks=d.landmarks / scale,
            score=d.score,
        )
        for d in detections
    ]


def _best(detections: list[Detection], keep: int, gate: QualitySettings) -> list[Detection]:
    """The `keep` best-ranked detections (quality.rank), in detection order."""
    ranks = [rank(d.landmarks, d.score, gate) for d in detections]
    kept = sorted(sorted(range(len(detections)), key=lambda i: ranks[i], reverse=True)[:keep])
    return [detections[i] for i in kept]


def _face(detection: Detection) -> Face:
    x, y, w, h = (round(float(v), 1) for v in detection.box)
    marks = [(round(float(px), 1), round(float(py), 1)) for px, py in detection.landmarks]
    return Face(
        box=(x, y, w, h),
        landmarks=(marks[0], marks[1], marks[2], marks[3], marks[4]),
        score=round(min(max(detection.score, 0.0), 1.0), 4),
    )
