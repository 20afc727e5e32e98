#!/usr/bin/python3
"""A real RTSP server on loopback for the tests (run by Debian's python3, which has `gi`).

Serves a folder of JPEGs named f00000.jpg, f00001.jpg, … in a loop as an MJPEG/RTP stream:
    /usr/bin/python3 rtsp_server.py --port 8554 --frames DIR [--path /cam] [--fps 10]
Prints "ready" once it listens. Killing the process is a real outage for its clients.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # jpegdec + videorate give the buffers timestamps, so the server sends at --fps instead
    # of as fast as it can read the files.
    factory.set_launch(
        f"( multifilesrc location={args.frames}/f%05d.jpg loop=true "
        f"caps=image/jpeg,framerate={args.fps}/1 ! jpegdec ! videorate "
        f"! video/x-raw,framerate={args.fps}/1 ! jpegenc quality=90 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
