"""The tracking stage of a batch: which faces to embed, tracks moved on, `seen` after commits.

Everything tracks add to a frame's commit is made here: the camera's state as this worker last
knew it (`TrackBook`), the faces relabelled by their tracks' votes, the state write and visit
events that go out in the frame's ack-gated commit (`TrackWrite`), and the site-wide `seen`
marker that follows a published `identified` event. The rules of tracks are in `tracks.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis
import structlog
from numpy.typing import NDArray

from facestream.schemas import Event, Face, Frame, Result, keys
from facestream.schemas.entries import is_after

from .commit import TrackWrite
from .engine import EmbedPlan, Recognition, decode_jpeg
from .settings import TrackSettings
from .tracks import (
    CameraTracks,
    FrameRef,
    Sighting,
    TrackBook,
    advance,
    face_quality,
    plan_embeddings,
)

__all__ = ["Tracked", "TrackingStage"]

log = structlog.get_logger("tracking")


@dataclass(frozen=True)
class Tracked:
    """A frame's result relabelled by its tracks, and what its commit writes for them."""

    result: Result
    write: TrackWrite | None = None  # None: a late frame, or one tracks left alone
    events: Sequence[Event] = ()  # written by `write`; `seen` follows the identified ones


class TrackingStage:
    """Applies each frame of a batch to its camera's tracks, and announces who was seen."""

    def __init__(self, client: redis.Redis, settings: TrackSettings) -> None:
        self.client = client
        self.settings = settings
        self.book = TrackBook(client)

    def covers(self, camera: str) -> bool:
        return camera not in self.settings.untracked_cameras

    def planner(self, frames: Sequence[tuple[str, Frame]]) -> EmbedPlan:
        """Which faces of each frame (by index, with its group) the model must embed."""
        states = [
            self.book.state(group, frame.camera) if self.covers(frame.camera) else None
            for group, frame in frames
        ]

        def plan(index: int, faces: Sequence[Face]) -> list[bool]:
            state = states[index]
            if state is None:
                return [True] * len(faces)
            return plan_embeddings(state[1], [f.box for f in faces], self.settings)

        return plan

    def apply(
        self,
        result: Result,
        recognition: Recognition,
        image: NDArray[np.uint8] | None,
        update: bool,
        jpeg: bytes | None = None,
    ) -> Tracked:
        """Label the result's faces from its camera's tracks; with `update`, move them on.

        `image`: the decoded frame, for face quality and snapshots (None for a cache hit, whose
        `jpeg` is decoded only while one of its visits may lack a snapshot).
        """
        if not self.covers(result.camera):
            return Tracked(result)
        token, state = self.book.state(result.group, result.camera)
        if image is None and jpeg is not None and result.faces:
            # A cache hit was never decoded; its tracks still need their snapshot (issue 20,
            # item 9): decode it while one of its faces may lack one, so a visit served from
            # the cache gets its crop like any other.
            image = _decoded_for_snapshots(jpeg, state, len(result.faces))
        sightings = []
        for index, face in enumerate(result.faces):
            quality, crop = face_quality(image, face) if image is not None else (0, None)
            embedding = recognition.embeddings[index] if recognition.was_embedded(index) else None
            sightings.append(Sighting(face, embedding, quality, crop))
        ref = FrameRef(result.group, result.camera, result.frame_id, result.ts)
        try:
            step = advance(
                state, ref, sightings, self.settings, "cache" if result.cached else "model"
            )
        except Exception as exc:  # a bug of ours must not hold the frame back: publish it as is
            log.exception("tracks not applied", camera=result.camera, error=repr(exc))
            return Tracked(result)
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


def _decoded_for_snapshots(
    jpeg: bytes, state: CameraTracks, faces: int
) -> NDArray[np.uint8] | None:
    """A cache hit's image, while its camera has fewer tracks holding a snapshot than it has
    faces (a new visit, or one whose crop was never kept); None once every one has a crop, so
    hits stay cheap (no decode per hit), or when it cannot be decoded (no snapshot, no loss)."""
    if sum(track.snapshot is not None for track in state.tracks) >= faces:
        return None
    try:
        return decode_jpeg(jpeg)
    except Exception:  # a snapshot only: the frame's result is published all the same
        return None
