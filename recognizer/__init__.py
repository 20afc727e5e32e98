"""Recogniser: detect, align, embed and match faces; the worker loop over Redis Streams."""

from .batch import FrameCounts, content_hash
from .deliveries import Delivery
from .engine import FaceEngine, Recognition, current_model_id, decode_jpeg
from .gallery import Gallery, embed_photos
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
    "FrameCounts",
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
    "content_hash",
    "current_model_id",
    "decode_jpeg",
    "embed_photos",
]
