"""Image sizes read from headers alone, for every format photos are taken in, and the CLI's
enrolment refusing a photo whose header declares more than limits.max_pixels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from facestream.client import recognise_image
from facestream.ingest.sources import IMAGE_SUFFIXES
from facestream.schemas import InvalidFrame, jpeg_size, keys
from facestream.schemas.images import image_size
from facestream.server import EmbeddedRedis

from .helpers import png_header


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
def test_every_format_measured_as_opencv_decodes_it(suffix: str) -> None:
    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(suffix, image)
    assert ok
    data = encoded.tobytes()
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert image_size(data) == (decoded.shape[1], decoded.shape[0]) == (53, 37)


def test_lossless_webp_gif_and_top_down_bmp() -> None:
    image = np.zeros((37, 53, 3), np.uint8)
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert lossless[12:16] == b"VP8L" and image_size(lossless) == (53, 37)
    gif = b"GIF89a" + (53).to_bytes(2, "little") + (37).to_bytes(2, "little") + b"\0" * 8
    assert image_size(gif) == (53, 37)
    bmp = bytearray(cv2.imencode(".bmp", image)[1].tobytes())
    bmp[22:26] = (-37).to_bytes(4, "little", signed=True)
    assert image_size(bytes(bmp)) == (53, 37)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.7", r"^not an image this can measure .*: starts with 25504446$"),
        (png_header(1, 1)[:20], r"^truncated image header \(20 bytes\)$"),
        (png_header(0, 5), r"^image header declares an empty image \(0x5\)$"),
        (b"II*\x00" + (8).to_bytes(4, "little") + b"\0\0", r"^corrupt TIFF: no image width"),
    ],
)
def test_what_cannot_be_measured_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidFrame, match=message):
        image_size(data)


def test_enrol_refuses_a_bomb_before_decoding(
    redis_server: EmbeddedRedis, model_cache: Path, tmp_path: Path
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))  # its data would not even decode
    done = subprocess.run(
        [sys.executable, "-m", "facestream", "gallery", "enroll", "x", str(bomb),
         "--redis-url", redis_server.url],
        env={**os.environ, "FACESTREAM_MODELS__CACHE_DIR": str(model_cache)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        f"error: {bomb}: 20000x20000 = 400000000 pixels, over limits.max_pixels (16777216); "
        "scale it down first\n"
    ), done.stderr


def test_recognise_measures_the_photo_by_its_header(client: redis.Redis) -> None:
    """A JPEG whose frame header claims 30000x30000 is refused before anything decodes it."""
    small = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    sof = small.index(b"\xff\xc0")
    forged = small[: sof + 5] + (30000).to_bytes(2, "big") * 2 + small[sof + 9 :]
    assert jpeg_size(forged) == (30000, 30000)
    with pytest.raises(InvalidFrame, match=r"^frame is 30000x30000 = 900000000 pixels, over"):
        recognise_image(client, "g1", forged, timeout_s=0.1)
    assert client.exists(keys.frames("g1")) == 0
