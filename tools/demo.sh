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
rollout and trainer processes over private Redis servers) needs video/ sampling, the model,
sequence parallelism, the cache, rollout and trainer. This demo runs it once they exist; until
then it shows the binary, its commands and the resolved demo config.
NOTE
