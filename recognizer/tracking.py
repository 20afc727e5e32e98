"""The tracking stage of a batch: what to detect and embed, tracks moved on, `seen` after commits.

Everything tracks add to a frame's commit is made here: the camera's state as this worker last
knew it (`TrackBook`), the faces relabelled by their tracks' votes, the state write and visit
events that go out in the frame's ack-gated commit (`TrackWrite`), and the site-wide `seen`
marker that follows a published `identified` event. Before detection it screens each frame
for motion against the thumbnail its camera's state carries (`screen`): a frame where nothing
moved is not detected, its faces are those of its tracks. The rules of tracks are in `tracks.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import redis
import structlog

from facestream.schemas import Event, Face, Frame, Result, jpeg_size, keys
from facestream.schemas.entries import is_after

from .commit import TrackWrite
from .engine import EmbedPlan, Need, Recognition, decode_jpeg
from .motion import Scene, Thumbnail, judge, thumbnail, window
from .regions import SMALL_FACE_PX, SMALL_PATCH_PX, Windows, scan_scale
from .settings import TrackSettings
from .tracks import (
    FrameRef,
    LazyView,
    Sighting,
    TrackBook,
    advance,
    plan_embeddings,
)
from .views import FrameView

__all__ = ["Screen", "Tracked", "TrackingStage"]

log = structlog.get_logger("tracking")


@dataclass(frozen=True)
class Tracked:
    """A frame's result relabelled by its tracks, and what its commit writes for them."""

    result: Result
    write: TrackWrite | None = None  # None: a late frame, or one tracks left alone
    events: Sequence[Event] = ()  # written by `write`; `seen` follows the identified ones


@dataclass(frozen=True)
class Screen:
    """What a frame's motion asks of the detector, and its thumbnail (the next reference)."""

    scene: Scene
    thumb: Thumbnail | None = None
    faces: Sequence[Face] = ()  # a still frame's: its tracks' faces as last detected
    # Where to detect (frame pixels) when motion stayed near tracked faces; None: everywhere.
    regions: Windows | None = None


class TrackingStage:
    """Applies each frame of a batch to its camera's tracks, and announces who was seen."""

    def __init__(
        self, client: redis.Redis, settings: TrackSettings, detect_size: int | None
    ) -> None:
        self.client = client
        self.settings = settings
        self.detect_size = detect_size  # the detector's input: reduced decodes go down to it
        self.book = TrackBook(client)

    def covers(self, camera: str) -> bool:
        return camera not in self.settings.untracked_cameras

    def screen(
        self, group: str, frame: Frame, tiles_due: bool = False, tiled_size: bool = False
    ) -> Screen:
        """What of the frame the detector must see, judged by its motion since its camera's
        last detected frame (the reference its tracks' state carries, so any worker can judge).

        `tiles_due`: the frame is due for the tiled search of a large frame, which alone finds
        a crowd's small faces: it is scanned whole unless nothing moved and every track was in
        the last frame (a track missing from the last frame may be one only the tiles see).
        `tiled_size`: the frame is that large (due or not): the window of a tracked face under
        `SMALL_FACE_PX` at the scan's scale, and a patch of motion under `SMALL_PATCH_PX`, are
        searched at the frame's own resolution, as the tiles would search them.
        """
        if not (self.settings.skip_still and self.covers(frame.camera)):
            return Screen("scan")
        size = (frame.w, frame.h)
        thumb = thumbnail(frame.img, size)
        _, state = self.book.state(group, frame.camera)
        # The tracks the reference frame showed: still frames continue exactly these.
        shown = [track for track in state.tracks if track.misses == 0]
        if state.since_scan + 1 >= self.settings.scan_every or any(
            len(track.landmarks) != 5 for track in shown
        ):
            return Screen("scan", thumb)
        margin, body = self.settings.motion_margin, self.settings.body_faces
        # Tracks the last frame showed first: their windows must hold a face again.
        tracks = sorted(state.tracks, key=lambda track: track.misses > 0)
        predicted = [track.predicted() for track in tracks]
        windows = [window(box, margin, size) for box in predicted]
        scale = scan_scale(size, self.detect_size)
        small = [tiled_size and box[3] * scale < SMALL_FACE_PX for box in predicted]
        # Where each tracked person is heading and where they were: the reference still shows
        # them there, so that spot changes as they leave it.
        people = [
            window(box, margin, size, body)
            for track, heading in zip(tracks, predicted, strict=True)
            for box in (heading, track.box)
        ]
        reference = Thumbnail.decode(state.reference, size)
        judged = judge(
            reference, thumb, people, self.settings.motion_level, self.settings.cut_fraction
        )
        windowed = judged.scene == "windows" and self.settings.regions and not tiles_due
        lost_sight = tiles_due and len(shown) < len(state.tracks)
        if (judged.scene != "still" and not windowed) or lost_sight:
            return Screen("scan", thumb)
        if judged.scene == "windows":
            boxes = [*windows, *judged.moving]
            full_res = [
                *small,
                *(
                    tiled_size and max(w, h) * scale < SMALL_PATCH_PX
                    for _, _, w, h in judged.moving
                ),
            ]
            return Screen("windows", judged.reference, regions=Windows(boxes, len(shown), full_res))
        faces = [
            Face.model_validate(
                {"box": track.box, "landmarks": track.landmarks, "score": track.score}
            )
            for track in shown
        ]
        return Screen("still", judged.reference, faces)

    def planner(self, frames: Sequence[tuple[str, Frame]]) -> EmbedPlan:
        """Which faces of each frame (by index, with its group) the model must embed; None for
        a frame of an untracked camera (all of them)."""
        states = [
            self.book.state(group, frame.camera) if self.covers(frame.camera) else None
            for group, frame in frames
        ]

        def plan(index: int, faces: Sequence[Face]) -> list[Need] | None:
            state = states[index]
            if state is None:
                return None
            return plan_embeddings(
                state[1], [f.box for f in faces], self.settings, frames[index][1].ts
            )

        return plan

    def apply(
        self,
        result: Result,
        recognition: Recognition,
        view: FrameView | None,
        update: bool,
        jpeg: bytes | None = None,
        screen: Screen | None = None,
    ) -> Tracked:
        """Label the result's faces from its camera's tracks; with `update`, move them on.

        `view`: the decoded frame, for face quality and snapshots (None for a cache hit, whose
        `jpeg` is decoded only while one of its visits may lack a snapshot, and for a still
        frame). `screen`: what its motion made of it (a detected frame becomes the reference).
        """
        if not self.covers(result.camera):
            return Tracked(result)
        token, state = self.book.state(result.group, result.camera)
        image = LazyView.of(view) if view is not None else None
        if view is None and jpeg is not None and recognition.detected and result.faces:
            # A cache hit was never decoded; its tracks still need their snapshot (issue 20,
            # item 9): it is decoded when a track that holds no crop weighs one, so a visit
            # served from the cache gets its crop like any other (a track that holds one is
            # bettered by a model-served frame, not by a hit).
            # Decoded as a miss of this camera is (tracks.reduced_decode), so the snapshot's
            # sharpness is measured at the scale the misses' are.
            reduced = self.detect_size if self.settings.reduced_decode else None
            image = LazyView(partial(_decoded_for_snapshots, jpeg, reduced), missing_only=True)
        sightings = [
            Sighting(
                face,
                recognition.embeddings[index] if recognition.was_embedded(index) else None,
                image,
            )
            for index, face in enumerate(result.faces)
        ]
        ref = FrameRef(result.group, result.camera, result.frame_id, result.ts)
        try:
            step = advance(
                state, ref, sightings, self.settings, "cache" if result.cached else "model"
            )
        except Exception as exc:  # a bug of ours must not hold the frame back: publish it as is
            log.exception("tracks not applied", camera=result.camera, error=repr(exc))
            return Tracked(result)
        if screen is not None and screen.scene != "still":
            # Detected: the next frames' motion is measured against it.
            step.state.reference = screen.thumb.encode() if screen.thumb is not None else ""
        elif screen is None:
            # A cache hit moved the tracks to its faces, away from what the reference shows:
            # a next frame that looks like the reference must not pass as still with them.
            step.state.reference = ""
        if screen is not None:  # a scan restarts the count to the next one
            step.state.since_scan = 0 if screen.scene == "scan" else step.state.since_scan + 1
        if not (update and is_after(ref.entry_id, token)):
            # A late frame (its camera's tracks are past it), or one we gave up re-applying:
            # labelled from the live tracks it continues, changing nothing.
            live = {track.id for track in state.tracks}
            faces = [
                face if face.track in live else own
                for face, own in zip(step.faces, result.faces, strict=True)
            ]
            return Tracked(result.model_copy(update={"faces": faces}))
        write = TrackWrite(
            key=keys.track(ref.group, ref.camera),
            expect=token,
            token=ref.entry_id,
            state=step.state.dumps(),
            state_ttl_s=self.settings.state_ttl_s,
            events_key=keys.events(ref.group),
            events=[event.to_fields() for event in step.events],
            events_maxlen=self.settings.events_maxlen,
            snapshots=step.snapshots,
            snapshot_ttl_s=self.settings.snapshot_ttl_s,
        )
        self.book.remember(ref.group, ref.camera, ref.entry_id, step.state)
        return Tracked(result.model_copy(update={"faces": step.faces}), write, step.events)

    def refresh(self, frames: Sequence[tuple[str, Frame]]) -> None:
        """Before a run of commits: read again the cameras another worker moved on (and those
        not read yet), in one round trip."""
        self.book.refresh({(group, f.camera) for group, f in frames if self.covers(f.camera)})

    def refused(self, group: str, camera: str) -> None:
        """A commit carrying this camera's tracks was not applied: read them again next time."""
        self.book.forget(group, camera)

    def announce_seen(self, published: Sequence[Tracked]) -> None:
        """One site-wide `seen` per identity per cooldown, after the commits that identified.

        The marker lives in its own slot (`fs:{seen}:…`), so it cannot share the commit's
        script: it is set (NX) only after the commit published the `identified` event, and the
        `seen` event follows only where this worker set it. A crash between the two loses that
        one `seen` (at most once per cooldown, never twice).
        """
        identified = [
            (tracked.result.group, event)
            for tracked in published
            for event in tracked.events
            if event.type == "identified" and event.identity is not None
        ]
        if not identified:
            return
        markers = self.client.pipeline(transaction=False)
        for _, event in identified:
            assert event.identity is not None
            markers.set(
                keys.seen(event.identity), event.frame_id, nx=True, ex=self.settings.cooldown_s
            )
        announce = self.client.pipeline(transaction=False)
        for (group, event), fresh in zip(identified, markers.execute(), strict=True):
            if fresh:
                seen = event.model_copy(update={"type": "seen"})
                announce.xadd(
                    keys.events(group),
                    seen.to_fields(),  # type: ignore[arg-type]
                    maxlen=self.settings.events_maxlen,
                    approximate=True,
                )
        announce.execute()


def _decoded_for_snapshots(jpeg: bytes, detect_size: int | None) -> FrameView | None:
    """A cache hit's image, or None when it cannot be decoded (no snapshot, no loss)."""
    try:
        try:
            return FrameView.reduced(jpeg, jpeg_size(jpeg), detect_size)
        except ValueError:  # Exif, or libjpeg-turbo refused it: OpenCV's decode, as a miss's
            return FrameView.whole(decode_jpeg(jpeg))
    except Exception:  # a snapshot only: the frame's result is published all the same
        return None
