"""Recogniser: detect, align, embed and match faces; the worker loop over Redis Streams."""

from .batch import Delivery, WorkerStats, content_hash
from .engine import FaceEngine, Recognition, current_model_id, decode_jpeg
from .gallery import Gallery, embed_photos, refuse_outliers, refuse_poor_view
from .matcher import Match, Matcher
from .settings import (
    MatchSettings,
    ModelSettings,
    TrackSettings,
    VisitorSettings,
    WorkerSettings,
)
from .visitors import VisitorBook
from .worker import Worker

__all__ = [
    "Delivery",
    "FaceEngine",
    "Gallery",
    "Match",
    "MatchSettings",
    "Matcher",
    "ModelSettings",
    "Recognition",
    "TrackSettings",
    "VisitorBook",
    "VisitorSettings",
    "Worker",
    "WorkerSettings",
    "WorkerStats",
    "content_hash",
    "current_model_id",
    "decode_jpeg",
    "embed_photos",
    "refuse_outliers",
    "refuse_poor_view",
]
