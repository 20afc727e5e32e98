"""Recogniser: detect, align, embed and match faces; the worker loop over Redis Streams.

The names below load lazily (`facestream.lazy`): the config reads `*Settings` and the page reads
`Gallery` without loading onnx, onnxruntime or OpenCV, which only model processes need.
"""

from typing import TYPE_CHECKING

from facestream.lazy import lazy_exports

if TYPE_CHECKING:
    from .batch import FrameCounts, content_hash
    from .deliveries import Delivery
    from .engine import FaceEngine, Recognition, decode_jpeg
    from .enrol import embed_photos, refuse_outliers, refuse_poor_view
    from .gallery import Gallery
    from .matcher import Match, Matcher
    from .model_files import current_model_id
    from .settings import (
        MatchSettings,
        ModelSettings,
        TrackSettings,
        VisitorSettings,
        WorkerSettings,
    )
    from .visitors import VisitorBook
    from .worker import Worker
else:
    __getattr__ = lazy_exports(
        __name__,
        {
            "Delivery": ".deliveries",
            "FrameCounts": ".batch",
            "content_hash": ".batch",
            "FaceEngine": ".engine",
            "Recognition": ".engine",
            "current_model_id": ".model_files",
            "decode_jpeg": ".engine",
            "embed_photos": ".enrol",
            "refuse_outliers": ".enrol",
            "refuse_poor_view": ".enrol",
            "Gallery": ".gallery",
            "Match": ".matcher",
            "Matcher": ".matcher",
            "MatchSettings": ".settings",
            "ModelSettings": ".settings",
            "TrackSettings": ".settings",
            "VisitorSettings": ".settings",
            "WorkerSettings": ".settings",
            "VisitorBook": ".visitors",
            "Worker": ".worker",
        },
    )

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
    "refuse_outliers",
    "refuse_poor_view",
]
