#!/usr/bin/env bash
# Set up a development environment in .venv (idempotent).
# Installs the system packages napari's canvas needs under Xvfb when apt-get is available.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
           libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 libgl1 \
           libfontconfig1 libdbus-1-3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ] && [ "${TILEUQ_SKIP_APT:-0}" != 1 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# torch is pinned to a range that resolves to the CPU build on this kind of machine
.venv/bin/python -m pip install -q -e ".[dev]"
