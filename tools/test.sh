#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (ctest). Servers a test needs (private
# redis-server processes) are started by the tests themselves, on sockets in their temp dirs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$LVRL_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" "$@"
