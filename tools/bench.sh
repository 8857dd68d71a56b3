#!/usr/bin/env bash
# Builds, then runs every benchmark in bench/ (each prints ratios against an anchor measured in the
# same run and ends with one JSON line). Record the figures in bench/RESULTS.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
shopt -s nullglob
benches=("$LVRL_BUILD_DIR"/bench/bench_*)
if ((${#benches[@]} == 0)); then
  echo "no benchmarks are built yet"
  exit 0
fi
for bench in "${benches[@]}"; do
  echo "== $(basename "$bench")"
  "$bench"
done
