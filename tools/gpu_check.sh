#!/usr/bin/env bash
# The checks that need a GPU, on a machine with a CUDA PyTorch 2.x install (its LibTorch, CUDA and NCCL):
#   1. tools/parity/hf_dump.py writes tests/fixtures/hf_parity/ from transformers;
#   2. builds core, model and sp (LVRL_PARTS; no FFmpeg or hiredis needed) against that LibTorch
#      with the CUDA paths on: the fused attention backend and the NCCL process groups;
#   3. runs those folders' tests: the CUDA ones (*Cuda*, *CUDA*) no longer skip, HF parity runs on
#      the new fixtures, and the rest checks the CPU code against this LibTorch release.
#
#   tools/gpu_check.sh [LOG_DIR]          (LOG_DIR: where logs and the fixture tarball go; default build-gpu)
#
# LVRL_DEPS_ROOT: a folder holding the Debian packages the parts need, unpacked (dpkg -x), for a
# machine that lacks them (yaml-cpp, nlohmann-json, CLI11, fmt, spdlog, utf8proc, xxhash, googletest);
# LVRL_GLOO_ROOT: libgloo-dev unpacked, used only where the LibTorch install ships no gloo/ headers.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=$(realpath -m "${1:-build-gpu}")
BUILD=build-gpu
mkdir -p "$LOG_DIR" "$BUILD"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
step() { echo "== $(date +%T) $*"; }

step "machine"
{
  nvidia-smi -L
  $PY -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
  g++ --version | head -1; cmake --version | head -1; nvcc --version | tail -1
} 2>&1 | tee "$LOG_DIR/machine.txt"

step "hf parity fixtures"
if [ -z "${SKIP_HF_DUMP:-}" ]; then  # set it to keep the committed fixtures
  rm -rf tests/fixtures/hf_parity
  timeout 180 $PY tools/parity/hf_dump.py 2>&1 | tee "$LOG_DIR/hf_dump.log"
  [ -d tests/fixtures/hf_parity ] && tar -cf "$LOG_DIR/hf_parity.tar" -C tests/fixtures hf_parity
fi

step "configure"
TORCH_CMAKE=$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
NCCL_DIR=$($PY -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null || true)
PREFIX="$TORCH_CMAKE"
NCCL_ARGS=()
if [ -n "$NCCL_DIR" ]; then
  NCCL_ARGS=(-DNCCL_LIBRARY="$(ls "$NCCL_DIR"/lib/libnccl.so* | head -1)" -DNCCL_INCLUDE_DIR="$NCCL_DIR/include")
fi
if [ -n "${LVRL_DEPS_ROOT:-}" ]; then
  DEPS=$(realpath "$LVRL_DEPS_ROOT")
  PREFIX="$PREFIX;$DEPS/usr"
  export PKG_CONFIG_LIBDIR=$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$DEPS/usr/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$DEPS
  export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  command -v pkg-config > /dev/null || export PKG_CONFIG=$DEPS/usr/bin/pkgconf
  # LibTorch's bundled fmt must not shadow the fmt these spdlog/fmt builds use: a folder with fmt/
  # alone, as -I (searched before every -isystem; GCC drops an -I that repeats an -isystem folder).
  mkdir -p "$BUILD/fmt-first" && cp -r "$DEPS/usr/include/fmt" "$BUILD/fmt-first/"
  CXX_FLAGS="-I$(realpath "$BUILD/fmt-first")"
fi
TORCH_INCLUDE=$($PY -c 'import torch.utils.cpp_extension as c; print(c.include_paths()[0])')
if [ ! -d "$TORCH_INCLUDE/gloo" ] && [ -n "${LVRL_GLOO_ROOT:-}" ]; then  # c10d's Gloo group needs gloo/ headers
  CXX_FLAGS="${CXX_FLAGS:-} -isystem $(realpath "$LVRL_GLOO_ROOT")/usr/include"
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLVRL_PARTS="core;model;sp" -DLVRL_BENCH=OFF \
  -DLVRL_CUDA=ON -DCMAKE_PREFIX_PATH="$PREFIX" -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CXX_FLAGS="${CXX_FLAGS:-}" \
  ${PKG_CONFIG:+-DPKG_CONFIG_EXECUTABLE=$PKG_CONFIG} "${NCCL_ARGS[@]}" 2>&1 | tee "$LOG_DIR/configure.log"

step "build"
timeout 330 ninja -C "$BUILD" -k 0 lvrl lvrl_core_tests lvrl_model_tests lvrl_sp_tests 2>&1 |
  grep -v "^\[" | tee "$LOG_DIR/build.log" | grep -E "error|Error" | head -40

step "tests"
# Every test in its own process (ctest), so a crash costs one test; the tokenizer suites need
# Node.js and npm packages, which the GPU machine lacks. LibTorch 2.11's libtorch.so exports its own
# copies of std::filesystem functions, and calls that bind to them crash (remove_all jumped to
# address 0 under cuda-gdb; a link order with libstdc++ first did not help): the system libstdc++ is
# preloaded so those symbols resolve to it. A crash: cuda-gdb -batch -ex run -ex bt --args TEST_BINARY.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export LD_PRELOAD=$(g++ -print-file-name=libstdc++.so.6)${LD_PRELOAD:+:$LD_PRELOAD}
timeout 200 ctest --test-dir "$BUILD" -j "$(nproc)" --timeout 120 --output-on-failure \
  -E 'ChatTemplate|QwenTokenizer|TokenizeCommand|TokenizerLoader|TokenizerParity' > "$LOG_DIR/ctest.log" 2>&1
grep -E "tests passed|\*\*\*|Cuda|CUDA" "$LOG_DIR/ctest.log" | head -60
step "done"
