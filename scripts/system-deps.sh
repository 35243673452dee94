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
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
