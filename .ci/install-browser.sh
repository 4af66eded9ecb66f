#!/usr/bin/env bash
# What the browser tests (tests/test_app_browser.py) need: Debian's Chromium, and the playwright
# Python package that drives it. Safe to run again: anything already installed is left alone.
# Never runs `playwright install` (it downloads its own browser build; the tests use the system one).
#
# Usage: .ci/install-browser.sh [PYTHON]    (PYTHON defaults to .venv/bin/python, then python3)
set -euo pipefail

PYTHON="${1:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "install-browser: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    echo "install-browser: chromium already installed ($(chromium --version 2>/dev/null || echo /usr/bin/chromium))"
else
    echo "install-browser: installing chromium from apt"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    # iproute2 lets the live-webcam test run WebRTC in a loopback-only network namespace.
    as_root apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-liberation iproute2
fi

if "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "install-browser: playwright already installed for $PYTHON"
else
    echo "install-browser: installing the playwright Python package for $PYTHON"
    "$PYTHON" -m pip install -q "playwright>=1.45"
fi

chromium --version
