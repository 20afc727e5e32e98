#!/usr/bin/python3
"""A real RTSP server on loopback for the tests (run by Debian's python3, which has `gi`).

Serves a folder of JPEGs named f00000.jpg, f00001.jpg, … in a loop as an MJPEG/RTP stream,
or a clip made by encode_clip.py (H.264 .mp4 or MJPEG .avi) as it is, once, with no re-encoding:
    /usr/bin/python3 rtsp_server.py --port 8554 (--frames DIR | --clip CLIP) [--path /cam]
        [--fps 10]
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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--frames")
    source.add_argument("--clip")
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
    if args.clip is None:
        launch = (
            f"multifilesrc location={args.frames}/f%05d.jpg loop=true "
            f"caps=image/jpeg,framerate={args.fps}/1 ! jpegdec ! videorate "
            f"! video/x-raw,framerate={args.fps}/1 ! jpegenc quality=90 "
            "! rtpjpegpay name=pay0 pt=26"
        )
    elif args.clip.endswith(".avi"):  # the container's timestamps pace the stream
        launch = f"filesrc location={args.clip} ! avidemux ! rtpjpegpay name=pay0 pt=26"
    else:
        launch = f"filesrc location={args.clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96"
    factory.set_launch(f"( {launch} )")
    # Frames: one looping stream for every client. A clip: each client gets it from the start.
    factory.set_shared(args.clip is None)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
