"""SIGINT/SIGTERM in a block: held off while a child is spawned, or turned into a stop event."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["deferred_signals", "signalled_stop"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Note SIGINT/SIGTERM inside the block and raise KeyboardInterrupt after it, if any came.

    Blocking them with pthread_sigmask is not enough: it covers one thread, and other threads
    (onnxruntime's, OpenCV's) still take process-directed signals, after which Python raises
    KeyboardInterrupt wherever the main thread is, e.g. between a fork and its bookkeeping.
    Outside the main thread (where handlers cannot be set) the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if noted:
        raise KeyboardInterrupt


@contextmanager
def signalled_stop() -> Iterator[threading.Event]:
    """An event that SIGINT/SIGTERM set inside the block, for a wait that ends cleanly on them;
    the previous handlers come back after it."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in _SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
