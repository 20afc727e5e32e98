"""YuNet face detector on onnxruntime: letterbox (and tile large frames), run, decode like OpenCV.

A frame much larger than the detector's input loses its small faces in the letterbox (a face
30 px high in a 1920-wide crowd is 10 px at 640), so such a frame is also searched at full
resolution in overlapping tiles of the input size; one NMS over the letterbox's and the tiles'
faces keeps a face on a seam once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

__all__ = ["Detection", "YuNetDetector"]

_STRIDES = (8, 16, 32)
_DIVISOR = 32
# Pixels a tile's face must keep from an inner tile edge: YuNet's boxes of a face cut by the
# edge end at the edge, give or take a few pixels.
_EDGE_MARGIN = 4
# Columns of a decoded row that are x and y coordinates (box corner, then the five points).
_X_COLUMNS = [0, 4, 6, 8, 10, 12]
_Y_COLUMNS = [1, 5, 7, 9, 11, 13]


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
        tile_above: float | None = None,
        tile_overlap: int = 192,
    ) -> None:
        self.session = session
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        # Tile a frame whose longer side is at least this many input sizes (None: never).
        self.tile_above = tile_above
        self.tile_overlap = tile_overlap
        self._input_name = session.get_inputs()[0].name
        self.runs = 0

    def detect(self, image: NDArray[np.uint8], tiled: bool = True) -> list[Detection]:
        """Faces in a BGR image, best score first, coordinates in that image's pixels.

        With `tiled` (and `tile_above` set), a frame at least `tile_above` times the input size
        is also searched in tiles at full resolution; crops and small frames never are.
        """
        raw = self._letterboxed(image)
        if tiled and self.tiles_for(image.shape[0], image.shape[1]):
            raw = self._suppress(np.vstack([raw, self._tiled(image)]))
        return [
            Detection(
                box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
                landmarks=row[4:14].reshape(5, 2).copy(),
                score=float(row[14]),
            )
            for row in raw
        ]

    def tiles_for(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The tiles (x, y, w, h) a frame this size is searched in; none for a small frame."""
        if self.tile_above is None or self.input_size is None:
            return []
        if max(height, width) < self.tile_above * self.input_size:
            return []
        xs = _starts(width, self.input_size, self.tile_overlap)
        ys = _starts(height, self.input_size, self.tile_overlap)
        side_w, side_h = min(width, self.input_size), min(height, self.input_size)
        return [(x, y, side_w, side_h) for y in ys for x in xs]

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
        return self._suppress(np.vstack(rows))

    def _letterboxed(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        scaled, scale = self._letterbox(image)
        raw = self.decode(self.infer(scaled))
        if scale != 1.0:
            raw[:, :14] /= scale
        return raw

    def _tiled(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Faces found whole in the tiles, in frame pixels.

        A face that comes near a tile's inner edge may be cut by it, so it is left out there:
        tiles overlap by `tile_overlap`, so a face smaller than the overlap less both margins
        lies whole and clear of the edges in a neighbouring tile; a larger one is found by the
        letterbox (192 px is 64 px there in a 1920-wide frame).
        """
        height, width = image.shape[:2]
        margin = _EDGE_MARGIN
        found = []
        for x, y, w, h in self.tiles_for(height, width):
            raw = self.decode(self.infer(image[y : y + h, x : x + w]))
            left, top = raw[:, 0], raw[:, 1]
            right, bottom = left + raw[:, 2], top + raw[:, 3]
            clear = np.ones(len(raw), dtype=bool)
            if x > 0:
                clear &= left >= margin
            if y > 0:
                clear &= top >= margin
            if x + w < width:
                clear &= right <= w - margin
            if y + h < height:
                clear &= bottom <= h - margin
            raw = raw[clear]
            raw[:, _X_COLUMNS] += x
            raw[:, _Y_COLUMNS] += y
            found.append(raw)
        return np.vstack(found) if found else np.zeros((0, 15), dtype=np.float32)

    def _suppress(self, faces: NDArray[np.float32]) -> NDArray[np.float32]:
        """Non-maximum suppression, best score first.

        OpenCV runs NMS on integer boxes; doing the same keeps us identical to it.
        """
        if len(faces) == 0:
            return faces
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


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of side `tile` start along `length`, evenly spread, overlapping at least
    `overlap`."""
    if length <= tile:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)] if count > 1 else [0]
