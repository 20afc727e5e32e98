"""Request bodies capped while they stream in: an upload over the cap is refused at the cap.

Starlette spools multipart files to disk as they arrive, so a chunked body (no
Content-Length to refuse up front) would otherwise be written out whole before any check.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message, Receive

from facestream.schemas import FacestreamError

__all__ = ["BodyTooLarge", "capped"]


class BodyTooLarge(FacestreamError):
    """The request body went past the cap; what came so far is dropped."""


def capped(request: Request, cap: int) -> Request:
    """`request` whose body raises BodyTooLarge as soon as more than `cap` bytes came in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(f"declared {declared} bytes")
    received = 0
    receive: Receive = request.receive

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap:
                raise BodyTooLarge(f"over {cap} bytes")
        return message

    return Request(request.scope, counting)
