#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser test (tests/test_app.py) when it is missing.
# Without root or sudo it says so and leaves the test to skip with that reason.
set -uo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install-chromium: not root and no sudo; the browser test will be skipped" >&2; exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "install-chromium: apt-get could not install chromium; the browser test will be skipped" >&2
command -v chromium >/dev/null && echo "install-chromium: $(chromium --version 2>/dev/null)"
exit 0
