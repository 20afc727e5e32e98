"""SFace embedder: align each face to 112×112 (insightface's norm_crop), embed in batches."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from insightface.utils.face_align import norm_crop

__all__ = ["EMBEDDING_SIZE", "SFaceEmbedder", "align"]

EMBEDDING_SIZE = 128
_CROP = 112


def align(image: NDArray[np.uint8], landmarks: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The 112×112 BGR crop of one face, warped onto SFace's 5-point template."""
    with warnings.catch_warnings():
        # skimage 0.26 deprecates SimilarityTransform.estimate, which norm_crop calls.
        warnings.simplefilter("ignore", FutureWarning)
        crop: NDArray[np.uint8] = norm_crop(image, landmarks.astype(np.float32), _CROP)
    return crop


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
