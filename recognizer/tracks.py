"""Face tracks of one camera: link faces of consecutive frames, vote identities, emit events.

A camera's tracks live in Redis (`fs:{G}:track:<camera>`, a hash: `v` the stream id of the last
frame applied, `state` the JSON below), because the frames of one camera are served by
whichever worker reads them. A worker applies a frame to the state it last read and writes the
new state in the frame's ack-gated commit only if `v` is still what it read (compare-and-set);
if another worker got there first, it reads the state again and re-applies the frame. A frame
older than the state (`v` already past its stream id) is late: it is labelled from the state
but changes nothing. Stream ids, not `seq`, order the frames: they grow within the frames
stream even when a camera agent restarts its `seq` at 0.

The identity of a track is a vote over its embedded frames: each casts one vote for the name
the matcher gave it (or for "unknown"). The identity settles, or changes, when one choice has
`min_votes` votes and more than half of all of them; a single frame this sure
(`instant_similarity`) names a new track at once. So one bad frame neither names a stranger
nor drops a known person.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import cv2
import numpy as np
import redis
import structlog
from numpy.typing import NDArray
from pydantic import (
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    with_config,
)

from facestream.schemas import Event, Face, IdentitySource, clip, keys

from .model_files import EMBEDDING_SIZE
from .quality import GATED
from .settings import TrackSettings
from .views import FrameView

if TYPE_CHECKING:  # the engine imports tracks (through regions): the plan's words only
    from .engine import Need

__all__ = [
    "CameraTracks",
    "FrameRef",
    "LazyView",
    "Sighting",
    "Step",
    "Track",
    "TrackBook",
    "advance",
    "parse_tracks",
    "plan_embeddings",
]

log = structlog.get_logger("tracks")
Box = tuple[float, float, float, float]
_UNKNOWN = ""  # the vote for "no enrolled identity"
_SNAPSHOT_SIDE = 256  # longest side of a stored face crop
_SNAPSHOT_GAIN = 1.1  # a crop replaces the stored one only when this much better


def _unpack(value: object) -> NDArray[np.float32] | None:
    """A stored embedding (base64 float32, "" for none) as the vector it holds; one of another
    length (another model's) is unreadable, so the state starts afresh instead of failing
    every frame's `advance`."""
    if not isinstance(value, str):
        raise ValueError("an embedding is a base64 string")
    if not value:
        return None
    raw = base64.b64decode(value, validate=True)
    if len(raw) != EMBEDDING_SIZE * 4:
        raise ValueError(f"an embedding is {EMBEDDING_SIZE} float32 values")
    vector = np.frombuffer(raw, dtype="<f4")
    vector.flags.writeable = False
    return vector


def _pack(vector: NDArray[np.float32] | None) -> str:
    return base64.b64encode(vector.astype("<f4").tobytes()).decode() if vector is not None else ""


# Kept decoded in memory, base64 in the JSON (the stored form is unchanged): it used to be
# decoded twice per track on every frame.
Embedding = Annotated[
    NDArray[np.float32] | None, PlainValidator(_unpack), PlainSerializer(_pack, return_type=str)
]
# Plain dataclasses, validated and serialised by pydantic only at the Redis boundary
# (`parse_tracks`, `CameraTracks.dumps`, the same JSON as before): as pydantic models every
# attribute write of `advance` went through pydantic's __setattr__ and every copy through
# model_copy, the bulk of a tracked cache hit's extra cost (docs/tracks.md, "Cache hits").
_STORED = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@with_config(_STORED)
@dataclass(kw_only=True, eq=False)
class Vote:
    """The frames of a track that voted for one choice, and their best similarity."""

    count: int = 0
    best: float | None = None  # highest similarity among these frames


@with_config(_STORED)
@dataclass(kw_only=True, eq=False)
class Track:
    """One face followed across frames of a camera."""

    id: str
    box: Box
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame of its camera, smoothed
    embedding: Embedding = None  # running mean of its embeddings (unit length, read-only)
    first_ts: int
    last_ts: int
    frames: int = 1
    misses: int = 0  # frames of the camera since it was last seen
    votes: dict[str, Vote] = field(default_factory=dict)
    settled: bool = False
    identity: str | None = None
    similarity: float | None = None
    gap: int = 1  # back-off steps between embeddings (doubles while the identity holds)
    since_embed: int = 0  # frames since the last embedding
    embed_ts: int = 0  # frame time of the last embedding (0: unknown)
    embed_area: float = 0.0
    quality: float = 0.0  # of the stored snapshot
    snapshot: str | None = None
    announced: bool = False  # `appeared` sent: it lasted `min_frames`
    # The face as last detected: a frame with no motion since shows it again, undetected.
    landmarks: tuple[tuple[float, float], ...] = ()
    score: float = 0.0

    def copy_for_step(self) -> Track:
        """A copy `advance` may change: a shallow one but for `votes`, its only part changed in
        place (the other fields are replaced, never written to). Copying `__dict__` is several
        times quicker than `dataclasses.replace`."""
        copied = object.__new__(Track)
        copied.__dict__.update(self.__dict__)
        copied.votes = {k: Vote(count=v.count, best=v.best) for k, v in self.votes.items()}
        return copied

    def predicted(self) -> Box:
        """Where the face should be in the camera's next frame, at its current velocity."""
        x, y, w, h = self.box
        frames = self.misses + 1
        return (x + self.velocity[0] * frames, y + self.velocity[1] * frames, w, h)

    def move(self, box: Box) -> None:
        frames = self.misses + 1
        step = ((box[0] - self.box[0]) / frames, (box[1] - self.box[1]) / frames)
        if self.frames > 1:  # a track's first move is all we know of its speed
            step = ((step[0] + self.velocity[0]) / 2, (step[1] + self.velocity[1]) / 2)
        self.velocity, self.box, self.misses = step, box, 0
        self.frames += 1


@with_config(_STORED)
@dataclass(kw_only=True, eq=False)
class CameraTracks:
    """The live tracks of one camera and the last frame applied to them."""

    tracks: list[Track] = field(default_factory=list)
    # The motion reference: grey thumbnail (motion.Thumbnail) of the last frame detected, and
    # the frames since the last full-frame scan.
    reference: str = ""
    since_scan: int = 0

    def dumps(self) -> bytes:
        return _STATE.dump_json(self)


_STATE: TypeAdapter[CameraTracks] = TypeAdapter(CameraTracks)


@dataclass(frozen=True)
class FrameRef:
    group: str
    camera: str
    entry_id: str
    ts: int


class LazyView:
    """A frame's view for snapshot crops, made on first use and then kept: a cache hit's image
    is decoded only when one of its tracks weighs a crop (a new track's first frame never does),
    and a face's quality is measured only then. `missing_only`: only tracks holding no crop yet
    weigh one (a cache hit's: it is decoded for them alone)."""

    __slots__ = ("_make", "_view", "missing_only")

    def __init__(
        self,
        make: Callable[[], FrameView | None] | None = None,
        view: FrameView | None = None,
        missing_only: bool = False,
    ) -> None:
        self._make = make  # None: `view` is the frame (already decoded, or none)
        self._view = view
        self.missing_only = missing_only

    @classmethod
    def of(cls, view: FrameView) -> LazyView:
        """A frame already decoded."""
        return cls(view=view)

    def get(self) -> FrameView | None:
        if self._make is not None:
            self._view, self._make = self._make(), None
        return self._view


@dataclass
class Sighting:
    """One face of a frame: its labelled detection and, if it was embedded, its embedding."""

    face: Face
    embedding: NDArray[np.float32] | None
    view: LazyView | None = None  # its frame, for a snapshot (cropped at full resolution)


@dataclass
class Step:
    """What applying one frame produced."""

    state: CameraTracks
    faces: list[Face]
    events: list[Event] = field(default_factory=list)
    snapshots: dict[str, bytes] = field(default_factory=dict)  # key -> JPEG


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def _face_quality(view: FrameView, face: Face) -> float:
    """Snapshot measure of a face: detection score × sharpness × area.

    Sharpness is the variance of the Laplacian of the face (as the detector saw it) resized to
    112×112 (blur lowers it whatever the face's size); area favours the closest view.
    """
    crop = _crop(view.detect, face.box, view.scale)
    if crop is None:
        return 0.0
    grey = cv2.cvtColor(cv2.resize(crop, (112, 112)), cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return face.score * sharpness * face.box[2] * face.box[3]


def _crop(image: NDArray[np.uint8], box: Box, scale: float = 1.0) -> NDArray[np.uint8] | None:
    """The face with a margin, from an image decoded at `scale`; None when nothing is left."""
    x, y, w, h = (v * scale for v in box)
    margin = 0.2
    left, top = max(int(x - margin * w), 0), max(int(y - margin * h), 0)
    right = min(int(x + w * (1 + margin)), image.shape[1])
    bottom = min(int(y + h * (1 + margin)), image.shape[0])
    if right - left < 2 or bottom - top < 2:
        return None
    return np.ascontiguousarray(image[top:bottom, left:right])


def plan_embeddings(
    state: CameraTracks, boxes: Sequence[Box], settings: TrackSettings, ts: int = 0
) -> list[Need]:
    """What each face of a frame (at frame time `ts`) needs of the model given the camera's
    tracks: "spare", "embed" or "link".

    spare: the face plainly continues one settled track: it overlaps where that track was
    heading alone (and the track no other face) by at least `jump_iou`, has not grown by
    `grow_ratio` since the track's last embedding, and the track's back-off gap has not run
    out: `gap` steps, each at least one frame and `reembed_step_ms` of frame time (so a 25 fps
    camera checks a name as often a second as a 10 fps one, not 2.5 times as often).
    embed: its track follows it by overlap alone (it overlaps one track by `link_iou` and that
    track no other face, or it overlaps none and no track holds an embedding it could be
    relinked to by `relink_similarity`), so a face the quality gate refuses is not embedded.
    link: only its embedding links it right (a face lost for a few frames and found again
    away from where its track was heading, two people crossing): embedded however poor its
    view.
    """
    predicted = [(track, track.predicted()) for track in state.tracks]
    relinkable = any(track.embedding is not None for track in state.tracks)
    needs: list[Need] = []
    for box in boxes:
        near = [(t, p) for t, p in predicted if iou(p, box) >= settings.link_iou]
        if not near:
            needs.append("link" if relinkable else "embed")
            continue
        # A flicker (a track seen fewer than min_frames frames, then missed: a partial or
        # false detection, no visit) claims no face for sparing: lingering beside a settled
        # track, it made that face look contested, and embedded, on every frame until dropped.
        heading = [(t, p) for t, p in near if t.announced or t.misses == 0]
        if len(heading) == 1 and _continues(heading[0], box, boxes, settings, ts):
            needs.append("spare")
        else:
            alone = len(near) == 1 and _claims(near[0][1], boxes, settings) == 1
            needs.append("embed" if alone else "link")
    return needs


def _continues(
    heading: tuple[Track, Box], box: Box, boxes: Sequence[Box], settings: TrackSettings, ts: int
) -> bool:
    """Whether `box` plainly continues the settled track heading to `heading[1]` (see
    `plan_embeddings`)."""
    track, predicted = heading
    return (
        _claims(predicted, boxes, settings) == 1
        and track.settled
        and track.embedding is not None
        and iou(predicted, box) >= settings.jump_iou
        and box[2] * box[3] <= settings.grow_ratio * track.embed_area
        and not _reembed_due(track, ts, settings)
    )


def _claims(predicted: Box, boxes: Sequence[Box], settings: TrackSettings) -> int:
    """How many of a frame's faces overlap a track's predicted box by `link_iou`."""
    return sum(1 for other in boxes if iou(predicted, other) >= settings.link_iou)


def _reembed_due(track: Track, ts: int, settings: TrackSettings) -> bool:
    """Whether the track's back-off gap ran out at this frame: `gap` frames, and `gap` steps
    of frame time less half a step (capture times jitter: 98 ms apart at 10 fps is still a
    step). A gap of 1 (an embedding disagreed) is the next frame whatever its time, and a
    clock that stepped back, or no time known, leaves frames alone to decide."""
    frames_due = track.since_embed + 1 >= track.gap
    if track.gap <= 1 or not (ts and track.embed_ts) or ts < track.embed_ts:
        return frames_due
    return frames_due and ts - track.embed_ts >= (track.gap - 0.5) * settings.reembed_step_ms


def advance(
    state: CameraTracks,
    frame: FrameRef,
    sightings: Sequence[Sighting],
    settings: TrackSettings,
    source: IdentitySource,
) -> Step:
    """Apply one frame to a camera's tracks: link, vote, end lost tracks; events on the way."""
    tracks = [track.copy_for_step() for track in state.tracks]
    step = Step(CameraTracks(reference=state.reference, since_scan=state.since_scan), [])
    links = _associate(tracks, sightings, settings)
    seen: set[str] = set()
    for index, sighting in enumerate(sightings):
        linked = links.get(index)
        if linked is None:
            track = _start(frame, sighting)
            tracks.append(track)
        else:
            track = linked
            track.move(sighting.face.box)
            track.last_ts = frame.ts
        track.landmarks, track.score = sighting.face.landmarks, sighting.face.score
        seen.add(track.id)
        step.faces.append(_observe(track, frame, sighting, settings, source, step))
    for track in tracks:
        if track.id not in seen:
            track.misses += 1
            lost = track.misses >= settings.lost_after_frames or (
                frame.ts - track.last_ts >= settings.lost_after_s * 1000
            )
            if lost:
                if track.announced:  # a flicker that never made a track goes silently
                    step.events.append(_left(frame, track))
                continue
        step.state.tracks.append(track)
    return step


def _associate(
    tracks: list[Track], sightings: Sequence[Sighting], settings: TrackSettings
) -> dict[int, Track]:
    """Greedy best-first pairing of faces with tracks by overlap plus embedding similarity."""
    pairs: list[tuple[float, int, int]] = []
    for t_index, track in enumerate(tracks):
        vector, predicted = track.embedding, track.predicted()
        for s_index, sighting in enumerate(sightings):
            overlap = iou(predicted, sighting.face.box)
            similarity = None
            if vector is not None and sighting.embedding is not None:
                similarity = float(vector @ sighting.embedding)
                if similarity < settings.link_similarity:
                    continue  # another person, however the boxes lie
            if overlap >= settings.link_iou or (
                similarity is not None and similarity >= settings.relink_similarity
            ):
                pairs.append((overlap + (similarity or 0.0), t_index, s_index))
    links: dict[int, Track] = {}
    used: set[int] = set()
    for _, t_index, s_index in sorted(pairs, reverse=True):
        if t_index in used or s_index in links:
            continue
        used.add(t_index)
        links[s_index] = tracks[t_index]
    return links


def _start(frame: FrameRef, sighting: Sighting) -> Track:
    return Track(
        id=f"t{secrets.token_hex(8)}",
        box=sighting.face.box,
        first_ts=frame.ts,
        last_ts=frame.ts,
        frames=1,
    )


def _observe(
    track: Track,
    frame: FrameRef,
    sighting: Sighting,
    settings: TrackSettings,
    source: IdentitySource,
    step: Step,
) -> Face:
    """Fold one face into its track; the face as published (the track's identity)."""
    face, embedding = sighting.face, sighting.embedding
    was_settled, was = track.settled, track.identity
    if embedding is None:
        track.since_embed += 1
    else:
        _vote(track, face, settings)
        track.since_embed, track.embed_ts = 0, frame.ts
        track.embed_area = face.box[2] * face.box[3]
        vector = track.embedding
        mean = embedding if vector is None else 0.7 * vector + 0.3 * embedding
        mean = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype("<f4")
        mean.flags.writeable = False  # shared by the copies of the track
        track.embedding = mean
        agrees = track.settled and face.identity == track.identity
        track.gap = min(track.gap * 2, settings.max_reembed_frames) if agrees else 1
    announcing = not track.announced and track.frames >= settings.min_frames
    if announcing or track.announced:
        _keep_best_crop(track, frame, sighting, step)
    if announcing:
        track.announced = True
        step.events.append(_event("appeared", frame, track))
        if track.identity is not None:
            step.events.append(_event("identified", frame, track))
    elif track.announced:
        changed = track.settled and (not was_settled or track.identity != was)
        if changed and (track.identity is not None or was is not None):
            step.events.append(_event("identified", frame, track))
    shown = track.identity if track.settled else None
    own = embedding is not None and face.identity == shown
    return face.model_copy(
        update={
            "identity": shown,
            "similarity": face.similarity if embedding is not None else track.similarity,
            "track": track.id,
            "source": source if own else "track",
        }
    )


def _keep_best_crop(track: Track, frame: FrameRef, sighting: Sighting, step: Step) -> None:
    if sighting.view is None or (sighting.view.missing_only and track.snapshot is not None):
        return
    view = sighting.view.get()
    if view is None:
        return
    quality = _face_quality(view, sighting.face)
    if quality <= track.quality * _SNAPSHOT_GAIN:
        return
    crop = _crop(view.full(), sighting.face.box)
    encoded = _jpeg(crop) if crop is not None else None
    if encoded is not None:
        track.quality = quality
        track.snapshot = keys.snapshot(frame.group, track.id)
        step.snapshots[track.snapshot] = encoded


def _vote(track: Track, face: Face, settings: TrackSettings) -> None:
    if face.unnamed_reason in GATED:  # issue 17: a view too poor to name is no evidence
        return
    choice = face.identity or _UNKNOWN
    if choice == _UNKNOWN and track.settled and face.candidate == track.identity:
        choice = face.candidate or _UNKNOWN  # issue 17: keeping a name needs less than giving it
    vote = track.votes.setdefault(choice, Vote())
    vote.count += 1
    if face.similarity is not None:
        vote.best = face.similarity if vote.best is None else max(vote.best, face.similarity)
    if face.identity == track.identity and face.similarity is not None:
        track.similarity = face.similarity
    if (
        not track.settled
        and face.identity is not None
        and (face.similarity or 0.0) >= settings.instant_similarity
    ):
        track.settled, track.identity, track.similarity = True, face.identity, face.similarity
        return
    total = sum(v.count for v in track.votes.values())
    leader, best = max(track.votes.items(), key=lambda item: item[1].count)
    if best.count >= settings.min_votes and best.count * 2 > total:
        identity = leader or None
        if not track.settled or identity != track.identity:
            track.settled, track.identity = True, identity
            track.similarity = face.similarity if face.identity == identity else best.best


def _jpeg(crop: NDArray[np.uint8]) -> bytes | None:
    scale = _SNAPSHOT_SIDE / max(crop.shape[:2])
    small = crop
    if scale < 1:
        small = np.asarray(
            cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8
        )
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return encoded.tobytes() if ok else None


def _event(kind: str, frame: FrameRef, track: Track) -> Event:
    return Event.model_validate(
        {
            "type": kind,
            "group": frame.group,
            "camera": frame.camera,
            "track": track.id,
            "ts": frame.ts,
            "frame_id": frame.entry_id,
            "identity": track.identity,
            "similarity": track.similarity if kind == "identified" else None,
            "snapshot": track.snapshot if kind == "identified" else None,
            "first_ts": track.first_ts if kind == "appeared" else None,
        }
    )


def _left(frame: FrameRef, track: Track) -> Event:
    vote = track.votes.get(track.identity or _UNKNOWN)
    return Event(
        type="left",
        group=frame.group,
        camera=frame.camera,
        track=track.id,
        ts=frame.ts,
        frame_id=frame.entry_id,
        identity=track.identity,
        similarity=track.similarity,
        first_ts=track.first_ts,
        last_ts=track.last_ts,
        dwell_ms=max(track.last_ts - track.first_ts, 0),
        frames=track.frames,
        best_similarity=vote.best if vote is not None else None,
        snapshot=track.snapshot,
    )


class TrackBook:
    """The track state of each camera as this worker last read or wrote it, with its token."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._states: dict[tuple[str, str], tuple[str, CameraTracks]] = {}

    def state(self, group: str, camera: str) -> tuple[str, CameraTracks]:
        """The camera's token and tracks: as this worker left them, else read from Redis."""
        found = self._states.get((group, camera))
        if found is None:
            token, raw = self.client.hmget(keys.track(group, camera), ["v", "state"])
            assert token is None or isinstance(token, bytes), "a client without decoding"
            assert raw is None or isinstance(raw, bytes), "a client without decoding"
            found = (token.decode() if token else "", parse_tracks(raw))
            self._states[(group, camera)] = found
        return found

    def remember(self, group: str, camera: str, token: str, state: CameraTracks) -> None:
        self._states[(group, camera)] = (token, state)

    def refresh(self, cameras: set[tuple[str, str]]) -> None:
        """Forget the cameras whose tracks another worker moved on since we last saw them, and
        read those we never read: one round trip for all, so their frames are applied once to
        the live state instead of being refused by the compare-and-set and applied again, each
        frame of the batch. A camera we know costs its token only (its state, a few KB, is
        read again only where it moved on, the next time it is asked for)."""
        places = sorted(cameras)
        if not places:
            return
        lookup = self.client.pipeline(transaction=False)
        for group, camera in places:
            if (group, camera) in self._states:
                lookup.hget(keys.track(group, camera), "v")
            else:
                lookup.hmget(keys.track(group, camera), ["v", "state"])
        for place, reply in zip(places, lookup.execute(), strict=True):
            known = self._states.get(place)
            if known is None:
                token, raw = reply
                self._states[place] = (token.decode() if token else "", parse_tracks(raw))
            elif (reply.decode() if reply else "") != known[0]:
                self.forget(*place)

    def forget(self, group: str, camera: str) -> None:
        """Drop what we know: another worker may have moved the camera's tracks on."""
        self._states.pop((group, camera), None)


def parse_tracks(raw: bytes | None) -> CameraTracks:
    """Stored tracks; unreadable ones are dropped (the next commit overwrites them)."""
    if not raw:
        return CameraTracks()
    try:
        return _STATE.validate_json(raw)
    except ValidationError as exc:
        log.warning("unreadable track state, starting afresh", error=clip(str(exc), 200))
        return CameraTracks()
