"""SFace embedder: align each face to the 112×112 ArcFace template, embed in batches."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from facestream.schemas import ModelError

from .model_files import EMBEDDING_SIZE

__all__ = ["EMBEDDING_SIZE", "SFaceEmbedder", "align", "check_embedding_size"]

_CROP = 112


def check_embedding_size(size: int) -> None:
    """Raise ValueError unless `size` is what this embedder makes (a gallery or a cache entry
    written for other weights cannot be matched against our embeddings)."""
    if size != EMBEDDING_SIZE:
        raise ValueError(f"embeddings of size {size}, the model makes {EMBEDDING_SIZE}")


# Where the eyes, nose tip and mouth corners land in the 112×112 crop: the ArcFace template that
# SFace was trained on (the same one as insightface's norm_crop and OpenCV's alignCrop).
_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
# No residual reaches this, so all five points stay inliers and the Levenberg-Marquardt
# refinement lands on the least-squares similarity (norm_crop's Umeyama estimate, to 1e-4 px).
_KEEP_ALL_POINTS = 1e9


def align(image: NDArray[np.uint8], landmarks: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The 112×112 BGR crop of one face, warped onto SFace's 5-point template."""
    matrix, _ = cv2.estimateAffinePartial2D(
        landmarks.astype(np.float32).reshape(5, 2),
        _TEMPLATE,
        method=cv2.RANSAC,
        ransacReprojThreshold=_KEEP_ALL_POINTS,
    )
    if matrix is None:  # the five landmarks coincide: no detector output we have seen
        raise ModelError(f"cannot align a face on degenerate landmarks {landmarks.tolist()}")
    crop = cv2.warpAffine(image, matrix, (_CROP, _CROP), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.asarray(crop, dtype=np.uint8)


class SFaceEmbedder:
    """Turn aligned BGR crops into L2-normalised 128-d embeddings, one run per batch."""

    def __init__(self, session: ort.InferenceSession, max_batch: int = 16) -> None:
        self.session = session
        self.max_batch = max_batch
        self._input_name = session.get_inputs()[0].name
        self.runs = 0
        self.faces = 0

    def embed(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """Embeddings (N×128, unit length) of N aligned crops."""
        if not crops:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        chunks = [
            self._run(crops[start : start + self.max_batch])
            for start in range(0, len(crops), self.max_batch)
        ]
        raw = np.vstack(chunks)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        unit: NDArray[np.float32] = (raw / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def _run(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        # SFace wants RGB in 0-255 (it subtracts 127.5 itself); BGR costs ~0.2 of cosine.
        batch = np.stack([cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) for crop in crops])
        blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        (output,) = self.session.run(None, {self._input_name: blob})
        self.runs += 1
        self.faces += len(crops)
        return np.asarray(output, dtype=np.float32).reshape(len(crops), -1)
