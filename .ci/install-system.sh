#!/usr/bin/env bash
# The system packages the tests need, from apt, and the playwright Python package:
# - Debian's Chromium, which the web app's browser tests (tests/test_app_browser.py) drive through
#   playwright (never `playwright install`: it downloads its own browser build);
# - libgl1, which opencv-python's GUI build links against, and Xvfb + xdotool, a virtual display
#   and a key-presser for the `moodify live` window test (tests/test_live_window.py).
# Safe to run again: anything already installed is left alone.
#
# Usage: .ci/install-system.sh [PYTHON]    (PYTHON defaults to .venv/bin/python, then python3)
set -euo pipefail

PYTHON="${1:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "install-system: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

# iproute2 lets the live-webcam test run WebRTC in a loopback-only network namespace (and gives
# ss); strace shows that the web app connects to nothing at start-up (tests/test_hostile_inputs.py).
PACKAGES="chromium chromium-driver fonts-liberation iproute2 libgl1 strace xvfb xdotool"
missing=""
for pkg in $PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
    echo "install-system: already installed: $PACKAGES"
else
    echo "install-system: installing from apt:$missing"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends $missing
fi

if "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "install-system: playwright already installed for $PYTHON"
else
    echo "install-system: installing the playwright Python package for $PYTHON"
    "$PYTHON" -m pip install -q "playwright>=1.45"
fi

chromium --version
