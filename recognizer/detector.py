"""YuNet face detector on onnxruntime: letterbox, run, decode like OpenCV's face_detect.cpp."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

__all__ = ["Detection", "YuNetDetector"]

_STRIDES = (8, 16, 32)
_DIVISOR = 32


@dataclass(frozen=True)
class Detection:
    """One face in image pixels: box (x, y, w, h), five landmarks, score."""

    box: tuple[float, float, float, float]
    landmarks: NDArray[np.float32]  # shape (5, 2)
    score: float


class YuNetDetector:
    """Detect faces with YuNet; `input_size` letterboxes to a square (None: native size)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_size: int | None = 640,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        self.session = session
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._input_name = session.get_inputs()[0].name
        self.runs = 0

    def detect(self, image: NDArray[np.uint8]) -> list[Detection]:
        """Faces in a BGR image, best score first, coordinates in that image's pixels."""
        scaled, scale = self._letterbox(image)
        raw = self.decode(self.infer(scaled))
        if scale != 1.0:
            raw[:, :14] /= scale
        return [
            Detection(
                box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
                landmarks=row[4:14].reshape(5, 2).copy(),
                score=float(row[14]),
            )
            for row in raw
        ]

    def infer(self, image: NDArray[np.uint8]) -> dict[str, NDArray[np.float32]]:
        """Run the network on a BGR image padded (bottom/right) to multiples of 32."""
        height, width = image.shape[:2]
        pad_h = -(-height // _DIVISOR) * _DIVISOR
        pad_w = -(-width // _DIVISOR) * _DIVISOR
        padded = cv2.copyMakeBorder(
            image, 0, pad_h - height, 0, pad_w - width, cv2.BORDER_CONSTANT, value=0
        )
        blob = np.ascontiguousarray(padded.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)
        names = [output.name for output in self.session.get_outputs()]
        outputs = self.session.run(names, {self._input_name: blob})
        self.runs += 1
        result = {name: np.asarray(value)[0] for name, value in zip(names, outputs, strict=True)}
        result["_shape"] = np.array([pad_h, pad_w], dtype=np.float32)
        return result

    def decode(self, outputs: dict[str, NDArray[np.float32]]) -> NDArray[np.float32]:
        """Rows of [x, y, w, h, 10 landmark coordinates, score] after NMS."""
        pad_w = int(outputs["_shape"][1])
        rows = []
        for stride in _STRIDES:
            cols = pad_w // stride
            cls = np.clip(outputs[f"cls_{stride}"][:, 0], 0.0, 1.0)
            obj = np.clip(outputs[f"obj_{stride}"][:, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = np.nonzero(score >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            col = (keep % cols).astype(np.float32)[:, None]
            line = (keep // cols).astype(np.float32)[:, None]
            bbox = outputs[f"bbox_{stride}"][keep]
            kps = outputs[f"kps_{stride}"][keep]
            cx = (col[:, 0] + bbox[:, 0]) * stride
            cy = (line[:, 0] + bbox[:, 1]) * stride
            w = np.exp(bbox[:, 2]) * stride
            h = np.exp(bbox[:, 3]) * stride
            marks = np.empty_like(kps)
            marks[:, 0::2] = (kps[:, 0::2] + col) * stride
            marks[:, 1::2] = (kps[:, 1::2] + line) * stride
            boxes = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
            rows.append(np.hstack([boxes, marks, score[keep, None]]).astype(np.float32))
        if not rows:
            return np.zeros((0, 15), dtype=np.float32)
        faces = np.vstack(rows)
        # OpenCV runs NMS on integer boxes; doing the same keeps us identical to it.
        int_boxes = [[int(v) for v in row[:4]] for row in faces]
        kept = cv2.dnn.NMSBoxes(
            int_boxes,
            faces[:, 14].tolist(),
            self.score_threshold,
            self.nms_threshold,
            top_k=self.top_k,
        )
        return faces[np.asarray(kept, dtype=np.int64).reshape(-1)]

    def _letterbox(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
        if self.input_size is None:
            return image, 1.0
        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        if scale == 1.0:
            return image, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        return np.asarray(cv2.resize(image, size, interpolation=interpolation), np.uint8), scale
