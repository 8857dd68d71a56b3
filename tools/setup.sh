#!/usr/bin/env bash
# Shared by tools/demo.sh and tools/test.sh: installs the Debian packages lvrl needs (only those
# missing; `apt-get update` once, before the first install), then configures and builds (Release).
# Works as root on a fresh Debian 12 machine; elsewhere uses sudo when it must install.
# Environment: LVRL_BUILD_DIR (default build), LVRL_BUILD_TYPE (default Release),
#              LVRL_CMAKE_ARGS (extra cmake arguments), LVRL_SKIP_INSTALL=1 (no package check).
set -euo pipefail

LVRL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LVRL_BUILD_DIR="${LVRL_BUILD_DIR:-$LVRL_ROOT/build}"
export LVRL_ROOT LVRL_BUILD_DIR

LVRL_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg
  libhiredis-dev redis-server
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libutf8proc-dev libxxhash-dev xxhash
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format-14 clang-tidy-14
  python3-av
  protobuf-compiler libprotobuf-dev gnuplot-nox
)

lvrl_log() { printf '[setup] %s\n' "$*" >&2; }

lvrl_install_packages() {
  local missing=() pkg
  for pkg in "${LVRL_PACKAGES[@]}"; do
    # Installed means status "install ok installed"; anything else (absent, half-configured) is missing.
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  # Some machines ship a newer Node.js than Debian's; Debian's npm would conflict with it.
  if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
  if ((${#missing[@]} == 0)); then
    lvrl_log "all ${#LVRL_PACKAGES[@]} packages present"
    return
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { lvrl_log "missing packages (${missing[*]}) and not root; install them or run as root"; exit 1; }
    sudo=(sudo)
  fi
  lvrl_log "installing: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

lvrl_build() {
  local start=$SECONDS
  local generator=()
  [[ -f "$LVRL_BUILD_DIR/CMakeCache.txt" ]] || generator=(-G Ninja)
  # shellcheck disable=SC2086
  cmake -S "$LVRL_ROOT" -B "$LVRL_BUILD_DIR" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE="${LVRL_BUILD_TYPE:-Release}" ${LVRL_CMAKE_ARGS:-} >/dev/null
  cmake --build "$LVRL_BUILD_DIR"
  lvrl_log "built in $((SECONDS - start)) s: $LVRL_BUILD_DIR/lvrl"
}

if [[ "${LVRL_SKIP_INSTALL:-0}" != 1 ]]; then lvrl_install_packages; fi
lvrl_build

# OpenBLAS picks its matrix kernels from the CPU model. A virtual CPU it does not recognise (this
# project's 2-core machines report "Intel(R) Xeon(R) Processor") gets the generic SSE3 kernels: a
# perf profile of blockwise attention spent 73% there, and naming the core type made it ~3× faster.
# Name it from the CPU flags unless the caller already chose one.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
  if [[ $cpu_flags == *" avx512f "* && $cpu_flags == *" avx512vl "* && $cpu_flags == *" avx512bw "* ]]; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif [[ $cpu_flags == *" avx2 "* && $cpu_flags == *" fma "* ]]; then
    export OPENBLAS_CORETYPE=Haswell
  fi
  unset cpu_flags
fi

# OpenMP workers that spin while waiting starve each other on a shared, loaded machine (a tiny-model
# prefill took 0.65 s spinning vs 0.045 s passive at load 4 on 2 cores). Passive waiting unless the
# caller chose; on a dedicated machine OMP_WAIT_POLICY=ACTIVE shaves a little latency.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
