"""Which model files facestream runs, by checksum: light enough for any process to import.

The gallery, `status` and the page need the model id (an identity enrolled by other weights is
unusable) without loading onnx, onnxruntime or OpenCV; `models.py` verifies and folds the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

__all__ = ["EMBEDDING_SIZE", "SFACE", "YUNET", "ModelFile", "current_model_id"]

#: Length of an SFace embedding: every template and cached embedding has it.
EMBEDDING_SIZE = 128


@dataclass(frozen=True)
class ModelFile:
    """A model as shipped, its checksum, and the dimensions we make dynamic when folding."""

    filename: str
    sha256: str
    dynamic_dims: Mapping[str, Mapping[int, str]]

    @property
    def model_id(self) -> str:
        """Stable identifier of the weights: name plus the start of the source checksum."""
        return f"{self.filename.split('_')[2]}@{self.sha256[:12]}"


YUNET = ModelFile(
    "face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    {"input": {2: "H", 3: "W"}},
)
SFACE = ModelFile(
    "face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    {"data": {0: "N"}, "fc1": {0: "N"}},
)


@cache  # a constant, asked for several times per frame
def current_model_id() -> str:
    """Identifies detector + embedder weights; gallery and cache entries carry it."""
    return f"{YUNET.model_id}+{SFACE.model_id}"
