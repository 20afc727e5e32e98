#!/usr/bin/python3
"""Turn a folder of JPEGs (f00000.jpg, …) into a camera-like clip for the RTSP server (Debian's
python3, which has `gi`): H.264 in MP4 by openh264 at a camera's bit rate, or the JPEGs
themselves muxed as MJPEG in AVI (byte for byte, no re-encode).
    /usr/bin/python3 encode_clip.py --frames DIR --out CLIP.mp4|CLIP.avi [--fps 20]
        [--bitrate 4000000] [--gop 40]
"""

import argparse
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fps", type=int, default=20)
    parser.add_argument("--bitrate", type=int, default=4_000_000)
    parser.add_argument("--gop", type=int, default=40, help="frames between key frames")
    args = parser.parse_args()

    count = len(list(Path(args.frames).glob("f*.jpg")))
    source = (
        f"multifilesrc location={args.frames}/f%05d.jpg index=0 stop-index={count - 1} "
        f"caps=image/jpeg,framerate={args.fps}/1"
    )
    if args.out.endswith(".avi"):
        sink = "jpegparse ! avimux"
    else:
        # A camera's encoder: constant bit rate, one key frame per `gop`, no frame skipping.
        sink = (
            f"jpegdec ! videoconvert ! video/x-raw,format=I420 ! openh264enc "
            f"bitrate={args.bitrate} gop-size={args.gop} rate-control=bitrate "
            f"enable-frame-skip=false ! h264parse ! mp4mux"
        )
    Gst.init(None)
    pipeline = Gst.parse_launch(f"{source} ! {sink} ! filesink location={args.out}")
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(
        Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        sys.exit(f"encoding failed: {message.parse_error()[0].message}")


if __name__ == "__main__":
    main()
