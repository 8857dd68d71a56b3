#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the embedded default config.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
lvrl="$LVRL_BUILD_DIR/lvrl"

echo "== lvrl $("$lvrl" --version | cut -d' ' -f2): the commands built so far"
"$lvrl" --help
echo
echo "== the demo config, resolved (configs/demo.yaml)"
"$lvrl" config show --config "$LVRL_ROOT/configs/demo.yaml"
echo
cat <<'NOTE'
== not built yet
The RL fine-tuning job (`lvrl launch` on configs/demo.yaml: tiny Qwen2.5-VL, synthetic videos,
rollout and trainer processes over private Redis servers) still needs the model, sequence
parallelism, `lvrl preprocess`, rollout and trainer; video sampling, the tokenizer and the Redis
cache are built (`lvrl video`, `lvrl tokenize`, `lvrl cache`). This demo runs the job once it
exists; until then it shows the binary, its commands and the resolved demo config.
NOTE
