#!/usr/bin/env bash
# Style checks beside the tests.
#   tools/lint.sh format [--fix]        clang-format-14 over every tracked C++ source: --dry-run -Werror
#                                       (what CI runs), or rewrite the files in place with --fix
#   tools/lint.sh tidy [FILE.cpp ...]   clang-tidy-14 with the root .clang-tidy over the named sources,
#                                       or those changed since LVRL_LINT_BASE (default HEAD~1) when none
#                                       are named. Needs a configured build (compile_commands.json in
#                                       LVRL_BUILD_DIR, default build/): each file takes 20-60 s, the
#                                       time it takes to parse LibTorch's headers.
# Exits non-zero on the first file that does not pass.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${LVRL_BUILD_DIR:-$root/build}"

sources() { git ls-files -- '*.cpp' '*.h'; }

case "${1:-}" in
  format)
    if [[ "${2:-}" == --fix ]]; then
      sources | xargs clang-format-14 -i
    else
      sources | xargs clang-format-14 --dry-run -Werror
      echo "[lint] clang-format: $(sources | wc -l) files formatted as .clang-format says"
    fi
    ;;
  tidy)
    shift
    [[ -f "$build_dir/compile_commands.json" ]] ||
      { echo "[lint] no $build_dir/compile_commands.json: build first (tools/test.sh or tools/setup.sh)" >&2; exit 2; }
    files=("$@")
    if ((${#files[@]} == 0)); then
      mapfile -t files < <(git diff --name-only --diff-filter=d "${LVRL_LINT_BASE:-HEAD~1}" -- '*.cpp')
    fi
    if ((${#files[@]} == 0)); then echo "[lint] clang-tidy: no changed sources"; exit 0; fi
    # The build's precompiled header is GCC's; clang reads the header it was made from instead.
    db=$(mktemp -d)
    trap 'rm -rf "$db"' EXIT
    sed "s#-include [^ ]*/cmake_pch.hxx#-include $root/cmake/pch.h#g" "$build_dir/compile_commands.json" \
      >"$db/compile_commands.json"
    for file in "${files[@]}"; do
      echo "[lint] clang-tidy $file" >&2
      clang-tidy-14 -p "$db" --quiet --warnings-as-errors='*' "$file"
    done
    ;;
  *)
    echo "usage: tools/lint.sh format [--fix] | tidy [FILE.cpp ...]" >&2
    exit 2
    ;;
esac
