#!/usr/bin/env bash
# Debian packages the test suite needs beyond python3.11, node/npm and make:
#   faketime - runs the suite with the clock moved a year ahead (make test-shifted);
#   chromium - the browser tests/e2e/test_dashboard.py drives (playwright-core, /usr/bin/chromium).
# Installs only what is missing; needs root (CI runs as root) or sudo.
set -euo pipefail
need=()
command -v faketime >/dev/null || need+=(faketime)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
