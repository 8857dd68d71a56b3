// The config sections core itself reads: logging, the run directory, the dataset.
#include "core/config.h"

namespace lvrl {
namespace {
const RegisterConfigSection log_section(
    {"log",
     "Logging",
     {
         ConfigKey::string("level", "info", "least severe level printed (LVRL_LOG_LEVEL overrides when set)")
             .choices({"trace", "debug", "info", "warn", "error", "off"}),
     }});

const RegisterConfigSection run_section(
    {"run",
     "Where a job keeps its files, and its randomness",
     {
         ConfigKey::string("dir", "runs/default",
                           "run directory: checkpoints, logs, sockets of private servers"),
         ConfigKey::integer("seed", 1234, "seed of every random generator of the run")
             .range(0, 9007199254740992.0),
     }});

const RegisterConfigSection data_section(
    {"data",
     "The dataset: JSONL records and the videos they name",
     {
         ConfigKey::string("path", "", "dataset JSONL file (one record per line)"),
         ConfigKey::string("video_dir", "", "directory every record's video path resolves under"),
         ConfigKey::integer("max_samples", 0, "read at most this many records (0 = all)").range(0, 1e12),
     }});
}  // namespace
}  // namespace lvrl
