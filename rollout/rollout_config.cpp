// The `rollout.*` config section: how answers are sampled and how the engine batches them
// (docs/rollout.md). Readers: rollout/sampler.h (sampling keys), rollout/engine.h (the rest).
#include "core/config.h"

namespace lvrl::rollout {
namespace {
const RegisterConfigSection rollout_section(
    {"rollout",
     "Sampling answers: how many per prompt, from which distribution, and how the engine batches them",
     {
         ConfigKey::integer("n", 5, "answers sampled per prompt (the group size G)").range(1, 1024),
         ConfigKey::number("temperature", 1.0, "softmax temperature; 0 = greedy").range(0, 100),
         ConfigKey::integer("top_k", 0, "keep the k most likely tokens; 0 = all").range(0, 1e9),
         ConfigKey::number("top_p", 1.0, "keep the smallest set of tokens whose probability reaches p")
             .range(0, 1),
         ConfigKey::number("min_p", 0.0, "drop tokens less likely than min_p × the most likely one")
             .range(0, 1),
         ConfigKey::integer("max_new_tokens", 1024, "answer length limit (finish reason `length`)")
             .range(1, 1e9),
         ConfigKey::integer("seed", 0, "seed of the first request; request i uses seed + i").range(0, 9e18),
         ConfigKey::integer("max_staleness", 0,
                            "policy versions a rollout may lag the trainer by (0 = on-policy); the trainer "
                            "keeps this + 2 published versions")
             .range(0, 1e6),
         ConfigKey::string_list("stop", {}, "strings that end an answer (besides <|im_end|> and EOS)"),
         ConfigKey::integer("prefill_chunk", 4096,
                            "prompt tokens prefilled per pass on one rank (bounds activation memory)")
             .range(1, 1e9),
         ConfigKey::integer("max_batch_rows", 32, "answers decoded together at most").range(1, 1e6),
         ConfigKey::string("sp_mode", "ulysses", "sequence-parallel attention for a multi-rank prefill")
             .choices({"ulysses", "ring", "zigzag", "hybrid"}),
     }});
}  // namespace
}  // namespace lvrl::rollout
