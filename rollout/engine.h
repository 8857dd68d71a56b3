// The generation engine: requests (one prompt, G answers) in, answers with both log-prob vectors out
// (docs/rollout.md#the-engine).
//
// Why it is built this way:
//  - One prefix, G samples: a request's prompt (video rows + text) is prefilled once — in chunks of
//    `prefill_chunk` tokens on one rank, in one SP pass over P ranks — and its G answer rows share
//    that K/V (model/prefix_kv_cache.h); the first token of every row is sampled from the prefill's
//    logits.
//  - Continuous batching: each step admits queued requests while their rows fit in `max_batch_rows`,
//    then decodes one token for every running row. A row that finishes leaves the batch at once
//    (the cache is compacted), so it stops costing compute; a request's result is complete when its
//    last row finishes.
//  - A weight swap waits for the batch: admissions stop, the running rows finish, the new weights
//    are loaded, admissions resume — no answer mixes two policies.
//  - Sampling happens on one rank: under SP, rank 0 samples and broadcasts the ids; every rank runs
//    the same stop checks on them, so all ranks keep the same rows. Every rank must submit the same
//    requests in the same order and call step() together.
#pragma once

#include <ATen/Tensor.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/prefix_kv_cache.h"
#include "model/qwen_vl.h"
#include "model/tokenizer.h"
#include "rollout/sampler.h"
#include "rollout/stop_checker.h"
#include "sp/layout.h"

namespace lvrl::sp {
class Mesh;
}

namespace lvrl::rollout {

struct GenerationRequest {
  std::string id;
  model::ModelInput
      prompt;  // one prompt: input_ids [1, S]; video rows as video_embeds (or pixels on one rank)
  SamplingParams sampling;  // answer i draws with its own generator, seeded sampling.seed + i
  int64_t n = 1;            // answers (G)
};

struct GeneratedAnswer {
  std::vector<int64_t> token_ids;       // [T]
  std::vector<float> logprobs;          // [T] under softmax(logits / temperature), the full vocabulary
  std::vector<float> sampled_logprobs;  // [T] under the truncated distribution sampled from
  FinishReason finish = FinishReason::None;
  uint64_t seed = 0;
};

struct GenerationResult {
  std::string id;
  int64_t prompt_tokens = 0;
  std::vector<GeneratedAnswer> answers;  // n, in sample order (log-prob vectors empty off rank 0)
};

struct EngineOptions {
  int64_t max_batch_rows = 32;   // answers decoded together at most
  int64_t prefill_chunk = 4096;  // prompt tokens per prefill pass on one rank
  sp::SpMode sp_mode = sp::SpMode::Ulysses;
  static EngineOptions from_config(const Config& config);  // rollout.max_batch_rows, prefill_chunk, sp_mode
};

struct EngineStats {
  int64_t prefill_tokens = 0, decode_steps = 0, decoded_tokens = 0;
  int64_t peak_kv_bytes = 0;  // the decode cache at its largest
};

class Engine {
 public:
  // mesh: null or one rank — this process alone; else the SP group generates together.
  Engine(model::QwenVL model, model::Tokenizer tokenizer, EngineOptions options,
         std::shared_ptr<sp::Mesh> mesh = nullptr);
  ~Engine();

  // Queues a request (thread-safe); it joins the running batch at a step with room for its n rows.
  // A request whose n exceeds max_batch_rows, or with an empty prompt, is an InputError naming it.
  void submit(GenerationRequest request);
  // Admits what fits, then decodes one token of every running row. Returns the requests completed.
  std::vector<GenerationResult> step();
  bool idle() const;  // nothing queued, nothing running, no swap pending
  // Submits these and steps until idle: results in the requests' order.
  std::vector<GenerationResult> generate(std::vector<GenerationRequest> requests);

  // Stops admissions; once the running rows have finished (at a later step, or now when none run),
  // calls `load` on the model and resumes.
  void swap_weights(std::function<void(model::QwenVLImpl&)> load);

  // Called with (done, total) prompt tokens while a long prompt prefills (chunk by chunk on one
  // rank); unset: silent.
  std::function<void(int64_t, int64_t)> on_prefill_progress;

  model::QwenVLImpl& model() { return *model_; }
  const EngineStats& stats() const { return stats_; }
  int64_t running_rows() const;

 private:
  struct Pending;
  struct Row;
  void admit();
  void start_request(GenerationRequest request);
  void sample_rows(const at::Tensor& logits, const std::vector<int64_t>& rows);
  std::vector<GenerationResult> retire_finished();
  bool leader() const;

  model::QwenVL model_;
  model::Tokenizer tokenizer_;
  EngineOptions options_;
  std::shared_ptr<sp::Mesh> mesh_;
  at::Tensor allowed_;  // [V_rows] bool: ids that may be sampled
  std::unique_ptr<model::SharedPrefixKVCache> cache_;

  mutable std::mutex queue_mutex_;
  std::deque<GenerationRequest> queue_;
  std::function<void(model::QwenVLImpl&)> pending_swap_;

  std::vector<std::shared_ptr<Pending>> requests_;  // admitted, not yet complete
  std::vector<Row> rows_;                           // the cache's rows, in its order
  EngineStats stats_;
};

}  // namespace lvrl::rollout
