"""Lazy package exports (PEP 562): a package names its API; each module loads on first use.

`facestream.recognizer` and `facestream.ingest` export the model runner and the camera agent
beside their config sections. Importing them eagerly would load onnx, onnxruntime and OpenCV
into every process that merely reads the config (status, the page, bridges, `results tail`);
with lazy exports only the processes that touch a model or a video source pay for them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package` that imports `exports[name]` (a relative module)."""

    def __getattr__(name: str) -> object:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__
