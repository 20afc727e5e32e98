"""Result entries of `fs:{G}:results`, cache values and dead letters."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.json_schema import SkipJsonSchema

from .entries import ENTRY_ID_PATTERN, Int64, clip
from .errors import InvalidMessage
from .events import IdentitySource
from .frames import SCHEMA_VERSION, StreamFields
from .keys import GROUP_NAME_PATTERN

__all__ = ["CachedRecognition", "DeadLetter", "Face", "FaceQuality", "Result", "UnnamedReason"]

Point = tuple[float, float]

#: Why a face was left unnamed: the quality gate's reasons first, then the decision's.
UnnamedReason = Literal[
    "too_small",  # inter-ocular distance under `quality.min_iod`
    "turned_away",  # estimated yaw or pitch beyond `quality.max_yaw` / `quality.max_pitch`
    "blurred",  # aligned crop's Laplacian variance under `quality.min_sharpness`
    "low_score",  # detection score under `quality.min_score`
    "no_gallery",  # no identity enrolled
    "below_threshold",  # best similarity under the threshold derived for the gallery size
    "ambiguous",  # best identity does not beat the second-best by `match.margin`
    "rejected",  # at least as close to one of the best identity's negatives
]


class FaceQuality(BaseModel):
    """How good a view of a face is: what the naming and enrolment gates judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iod: float = Field(ge=0.0, description="Inter-ocular distance in pixels (eye centres).")
    sharpness: float = Field(
        ge=0.0, description="Variance of the Laplacian of the aligned 112×112 crop."
    )
    yaw: float = Field(
        description="Estimated head yaw in degrees from the five points (0 frontal)."
    )
    pitch: float = Field(description="Estimated head pitch in degrees from the five points.")
    score: float = Field(ge=0.0, le=1.0, description="Detection confidence.")


class Face(BaseModel):
    """One detected face: where it is, how sure the detector was, and who it matched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: tuple[float, float, float, float] = Field(description="x, y, width, height in pixels.")
    landmarks: tuple[Point, Point, Point, Point, Point] = Field(
        description="Right eye, left eye, nose tip, right and left mouth corners (pixels)."
    )
    score: Annotated[float, Field(ge=0.0, le=1.0, description="Detection confidence.")]
    identity: str | None = Field(None, description="Enrolled name, or None when unknown.")
    similarity: float | None = Field(
        None, description="Cosine similarity to the best gallery identity, if any."
    )
    visitor: str | None = Field(
        None, description="Pseudonymous id of an unknown face (only with visitors enabled)."
    )
    track: str | None = Field(
        None, description="Face track this face belongs to (None: tracking off, or a late frame)."
    )
    source: IdentitySource = Field(
        "model",
        description="Where the identity came from: this frame's embedding (model), the track's "
        "vote (track), or a cached embedding of the same image (cache).",
    )
    quality: FaceQuality | None = Field(
        None, description="Size, sharpness, pose and score of this view (None: older entries)."
    )
    unnamed_reason: UnnamedReason | None = Field(
        None, description="Why the face was not named (None when named, or in older entries)."
    )
    # Internal, never written: the best identity of a face that passed the quality gate, the
    # floor and the margin but not the gallery-size threshold. A track already named it keeps
    # the name on such a frame (keeping a name takes less evidence than giving it).
    candidate: SkipJsonSchema[str | None] = Field(None, exclude=True)


_FACES: TypeAdapter[list[Face]] = TypeAdapter(list[Face])


class CachedRecognition(BaseModel):
    """What `fs:{G}:cache:<hash>` holds: detections and embeddings of one image, no names.

    Names are matched afresh on every hit, so a cached image follows gallery changes (a new
    enrolment, an erase) while the model still never runs twice on the same bytes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    faces: list[Face] = Field(description="Detections, with identity and similarity unset.")
    embeddings: str = Field("", description="base64 of float32 little-endian, faces × dim.")
    faces_dropped: int = Field(0, ge=0, description="Faces over the limit, not kept.")

    def embedding_matrix(self) -> NDArray[np.float32]:
        raw = np.frombuffer(base64.b64decode(self.embeddings), dtype="<f4")
        return raw.reshape(len(self.faces), -1) if self.faces else raw.reshape(0, 0)

    @classmethod
    def build(
        cls, model: str, faces: list[Face], embeddings: NDArray[np.float32], faces_dropped: int = 0
    ) -> CachedRecognition:
        anonymous = [
            face.model_copy(
                update={
                    "identity": None,
                    "similarity": None,
                    "visitor": None,
                    "track": None,
                    "source": "model",
                    "unnamed_reason": None,
                }
            )
            for face in faces
        ]
        encoded = base64.b64encode(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())
        return cls(
            model=model, faces=anonymous, embeddings=encoded.decode(), faces_dropped=faces_dropped
        )

    def dumps(self) -> bytes:
        return orjson.dumps(self.model_dump())

    @classmethod
    def loads(cls, raw: bytes) -> CachedRecognition:
        return cls.model_validate_json(raw)


class Result(BaseModel):
    """The recognition of one frame, published once per frame on the results stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Int64 = SCHEMA_VERSION
    frame_id: Annotated[str, Field(pattern=ENTRY_ID_PATTERN)] = Field(
        description="Stream id of the frame: the idempotency key."
    )
    camera: str
    group: str
    seq: Int64
    ts: Int64 = Field(description="Capture time of the frame, epoch milliseconds.")
    hash: str = Field(description="Content hash (BLAKE3-128, hex) of the encoded image.")
    cached: bool
    faces: list[Face]
    faces_dropped: Int64 = Field(
        0, ge=0, description="Faces found beyond `limits.max_faces` and left out (the worst views)."
    )
    model: str
    # Bounded so that the page's sums and means of them stay finite (JSON has no infinity).
    latency_ms: dict[str, Annotated[float, Field(ge=0, le=1e15)]] = Field(default_factory=dict)

    @property
    def identities(self) -> list[str]:
        """Names recognised in the frame, in detection order (unknown faces left out)."""
        return [face.identity for face in self.faces if face.identity is not None]

    def to_fields(self) -> dict[str, bytes | str | int]:
        """Fields for XADD: scalars as text, structured parts as JSON."""
        return {
            "v": self.v,
            "frame_id": self.frame_id,
            "camera": self.camera,
            "group": self.group,
            "seq": self.seq,
            "ts": self.ts,
            "hash": self.hash,
            "cached": int(self.cached),
            "faces": _FACES.dump_json(self.faces),
            "faces_dropped": self.faces_dropped,
            "model": self.model,
            "latency_ms": orjson.dumps(self.latency_ms),
        }

    @classmethod
    def from_fields(cls, fields: StreamFields) -> Result:
        """Parse one results-stream entry, raising InvalidMessage with the reason."""
        try:
            data = {key.decode(): value.decode() for key, value in fields.items()}
            parsed: dict[str, object] = dict(data)
            parsed["cached"] = data.get("cached") == "1"
            parsed["faces"] = orjson.loads(data.get("faces", "[]"))
            parsed["latency_ms"] = orjson.loads(data.get("latency_ms", "{}"))
            return cls.model_validate(parsed)
        except (UnicodeDecodeError, orjson.JSONDecodeError, ValidationError) as exc:
            raise InvalidMessage(f"invalid result entry: {exc}") from exc

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump())


class DeadLetter(BaseModel):
    """An entry that could not be processed, kept with the reason on `fs:{G}:dead`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Read back into URLs and the page: an id and a group name, never a path of their own.
    frame_id: Annotated[str, Field(pattern=ENTRY_ID_PATTERN)]
    group: Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
    reason: str = Field(description="Why, in one line (at most 300 characters).")
    deliveries: Int64
    camera: str = Field("", description="The entry's camera field as sent, cut to 64.")
    image_bytes: Int64 = 0

    # Both may come from a hostile entry: keep them short and printable wherever they go.
    @field_validator("reason")
    @classmethod
    def _short_reason(cls, reason: str) -> str:
        return clip(reason, 300)

    @field_validator("camera")
    @classmethod
    def _short_camera(cls, camera: str) -> str:
        return clip(camera, 64)

    def to_fields(self) -> dict[str, str | int]:
        return self.model_dump()

    @classmethod
    def from_fields(cls, fields: StreamFields) -> DeadLetter:
        """Parse one dead-letter entry, raising InvalidMessage with the reason."""
        try:
            return cls.model_validate({k.decode(): v.decode() for k, v in fields.items()})
        except (UnicodeDecodeError, ValidationError) as exc:
            raise InvalidMessage(f"invalid dead letter: {exc}") from exc
