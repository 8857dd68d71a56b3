#include "trainer/response_logprobs.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "model/text_model.h"
#include "sp/sp_attention.h"
#include "sp/vlm_shard.h"
#include "trainer/micro_batch.h"

namespace lvrl::trainer {

std::vector<std::vector<float>> response_logprobs(model::QwenVLImpl& model, const TrainBatch& local,
                                                  const std::shared_ptr<sp::Mesh>& mesh, sp::SpMode mode,
                                                  int64_t micro_batch_tokens) {
  at::NoGradGuard no_grad;
  auto attention = std::make_shared<sp::SequenceParallelAttention>(mesh, mode);
  model::ScopedTextAttention scope(*model.model, attention);
  model::LogprobOptions options;
  options.temperature = local.temperature;
  std::vector<std::vector<float>> out(local.sequences.size());
  for (const std::vector<int64_t>& members : plan_micro_batches(local, micro_batch_tokens)) {
    const ShardedMicroBatch mb = shard_micro_batch(model, local, members, *mesh, mode);
    const at::Tensor logprobs = sp::sharded_token_logprobs(model, mb.shard, attention, options);  // [B, l]
    // [B, S] by predicting position, float32 on the CPU.
    const at::Tensor full = sp::gather_sequence(logprobs, mb.shard.layout, *mesh).to(at::kCPU, at::kFloat);
    for (size_t b = 0; b < members.size(); ++b) {
      const TrainSequence& sequence = local.sequences[members[b]];
      const int64_t count = sequence.response_tokens();
      const at::Tensor values =
          full[static_cast<int64_t>(b)].narrow(0, sequence.response_start - 1, count).contiguous();
      out[members[b]].assign(values.data_ptr<float>(), values.data_ptr<float>() + count);
    }
  }
  return out;
}

ProbabilityDrift probability_drift(const std::vector<std::vector<float>>& a,
                                   const std::vector<std::vector<float>>& b) {
  LVRL_ASSERT(a.size() == b.size(), fmt::format("{} vs {} sequences", a.size(), b.size()));
  ProbabilityDrift drift;
  for (size_t i = 0; i < a.size(); ++i) {
    LVRL_ASSERT(a[i].size() == b[i].size(),
                fmt::format("sequence {}: {} vs {} log-probs", i, a[i].size(), b[i].size()));
    for (size_t t = 0; t < a[i].size(); ++t) {
      const double d =
          std::abs(std::exp(static_cast<double>(a[i][t])) - std::exp(static_cast<double>(b[i][t])));
      drift.max = std::max(drift.max, d);
      drift.sum += d;
      drift.tokens += 1;
    }
  }
  return drift;
}

}  // namespace lvrl::trainer
