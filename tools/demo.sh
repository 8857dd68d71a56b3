#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo job on the embedded default config
# (configs/demo.yaml): synthetic videos and a dataset (`lvrl dataset synth`), a tiny Qwen2.5-VL
# (`lvrl model init`), a private Redis cache server, `lvrl preprocess` into it (twice: the second run
# skips every cached video), and the cache's contents. The RL fine-tuning job joins this script when
# rollout and trainer land.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
lvrl="$LVRL_BUILD_DIR/lvrl"
config="$LVRL_ROOT/configs/demo.yaml"
run_dir="$LVRL_ROOT/runs/demo"
mkdir -p "$run_dir"
cd "$LVRL_ROOT"

echo "== lvrl $("$lvrl" --version | cut -d' ' -f2)"
"$lvrl" --help | sed -n '/Subcommands/,$p'

echo "== synthetic videos and dataset ($run_dir/data)"
"$lvrl" dataset synth --out "$run_dir/data" --videos 8 --seed 1234 --size 128x96
# What preprocess reads (data.path): a record whose video is missing — preprocess reports it and
# carries on, never a substitute — then every synthesized question (data.max_samples keeps the first).
{
  echo '{"id":"demo-missing","video":"gone.mp4","question":"?","answer":"A"}'
  cat "$run_dir/data/train.jsonl" "$run_dir/data/test.jsonl"
} >"$run_dir/dataset.jsonl"
wc -l "$run_dir/dataset.jsonl"

echo "== tiny model ($run_dir/model)"
tokenizer_dir=$(node "$LVRL_ROOT/tests/model/tokenizer_reference.mjs" fetch "$LVRL_BUILD_DIR/npm" | tail -1)
"$lvrl" model init --preset tiny --out "$run_dir/model" --tokenizer "$tokenizer_dir" --force
"$lvrl" model info "$run_dir/model" --frames 16 --frame-size 224x224

echo "== private Redis cache server (unix socket in $run_dir)"
socket="$run_dir/cache.sock"
password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
redis-server --port 0 --unixsocket "$socket" --unixsocketperm 700 --requirepass "$password" \
  --save '' --appendonly no --maxmemory 1gb --maxmemory-policy allkeys-lru --daemonize no \
  --logfile "$run_dir/cache.log" &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do [[ -S $socket ]] && break; sleep 0.1; done
url="unix://$socket?password=$password"

echo "== lvrl preprocess (exit 3 expected: one record's video is missing)"
status=0
"$lvrl" preprocess --config "$config" "redis.cache_url=$url" || status=$?
[[ $status == 3 ]] || { echo "demo: preprocess exited $status, expected 3"; exit 1; }
echo "== lvrl preprocess again: every cached video is skipped"
status=0
"$lvrl" preprocess --config "$config" "redis.cache_url=$url" || status=$?
[[ $status == 3 ]] || { echo "demo: preprocess exited $status, expected 3"; exit 1; }
echo "== the cache"
"$lvrl" cache stats --url "$url"
"$lvrl" cache verify --url "$url"
echo "== demo done (the RL job — rollout and trainer — is not built yet)"
