#!/usr/bin/env bash
# System packages the RTSP tests need: GStreamer's RTSP server for Debian's /usr/bin/python3.
# Installs them with apt-get when running as root; otherwise says what to install (those
# tests then skip, unless FACESTREAM_REQUIRE_RTSP=1, as in CI, makes them fail).
set -euo pipefail

check='import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer'
packages=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
          gstreamer1.0-plugins-good gstreamer1.0-rtsp)

if /usr/bin/python3 -c "$check" 2>/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${packages[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    /usr/bin/python3 -c "$check"
else
    echo "note: RTSP tests will be skipped; install: sudo apt-get install ${packages[*]}" >&2
fi
