#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing: chromium (browser
# tests) and nodejs/npm (fetching the official WCS Web SDK for the compatibility tests).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)  # RTMP tests push with Debian's ffmpeg
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)  # cluster tests: real Redis and Redis Cluster
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# RTSP tests: GStreamer's RTSP server as a real camera (tests/harness/rtsp_camera.py, run by /usr/bin/python3).
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 \
  || missing+=(python3-gst-1.0 gir1.2-gst-rtsp-server-1.0)
gst-inspect-1.0 x264enc >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-ugly gstreamer1.0-tools)
gst-inspect-1.0 rtph264pay >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-good)
gst-inspect-1.0 x265enc >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)  # H.265 cameras
gst-inspect-1.0 videotestsrc >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-base)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
