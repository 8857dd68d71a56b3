#include "trainer/policy_gradient.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <vector>

#include "core/error.h"
#include "core/tensor_format.h"
#include "model/text_model.h"
#include "sp/comm.h"
#include "sp/sp_attention.h"
#include "sp/vlm_shard.h"
#include "trainer/micro_batch.h"

namespace lvrl::trainer {

GradientOptions GradientOptions::from_config(const Config& config) {
  GradientOptions options;
  options.micro_batch_tokens = config.get<int64_t>("trainer.micro_batch_tokens");
  options.sp_mode = sp::parse_sp_mode(config.get<std::string>("sp.mode"));
  options.aggregation = LossAggregationOptions::from_config(config);
  options.recompute = config.get<bool>("trainer.recompute");
  return options;
}

namespace {

// Debug builds: every SP rank of a group must hold the same parameters (they are updated from the
// same summed gradients); a rank that drifted would silently train another model.
void expect_identical_parameters(const model::QwenVLImpl& model, const sp::Mesh& mesh) {
#ifndef NDEBUG
  at::Tensor sums = at::zeros({1, 2}, at::kDouble);
  for (const auto& param : model.parameters()) {
    const at::Tensor values = param.detach().to(at::kCPU, at::kDouble);
    sums[0][0] += values.sum();
    sums[0][1] += values.abs().sum();
  }
  const at::Tensor all = sp::all_gather_cat(mesh.sp(), sums, 0);  // [SP, 2]
  LVRL_ASSERT(at::equal(all, sums.expand_as(all)),
              fmt::format("SP rank {} holds other parameters than its group: {}", mesh.sp_rank(), all));
#else
  (void)model;
  (void)mesh;
#endif
}

}  // namespace

GradientResult accumulate_gradients(model::QwenVLImpl& model, const TrainBatch& local,
                                    const std::shared_ptr<sp::Mesh>& mesh, const GradientOptions& options,
                                    const TokenLoss& loss) {
  GradientResult result;
  expect_identical_parameters(model, *mesh);
  // The whole step's counts, before any backward.
  at::Tensor counts = at::zeros({2}, at::kLong);
  for (const TrainSequence& sequence : local.sequences) {
    LVRL_ASSERT(static_cast<int64_t>(sequence.old_logprobs.size()) == sequence.response_tokens() &&
                    sequence.response_start >= 1,
                fmt::format("a sequence of {} tokens from {} with {} old log-probs", sequence.length(),
                            sequence.response_start, sequence.old_logprobs.size()));
    counts[0] += sequence.response_tokens();
    counts[1] += 1;
  }
  sp::all_reduce_sum(mesh->dp(), counts);
  result.tokens = counts[0].item<int64_t>();
  result.sequences = counts[1].item<int64_t>();
  LVRL_ASSERT(result.tokens > 0, "an optimizer step without response tokens");

  const at::Tensor weight = model.lm_head_weight();
  auto attention = std::make_shared<sp::SequenceParallelAttention>(mesh, options.sp_mode);
  model::ScopedTextAttention scope(*model.model, attention);
  model::ScopedRecompute recompute(*model.model, options.recompute);
  model::LogprobOptions logprob_options;
  logprob_options.temperature = local.temperature;
  at::Tensor total = at::zeros({1}, at::kDouble);
  const StepNormaliser step{static_cast<double>(result.tokens), static_cast<double>(result.sequences)};
  for (const std::vector<int64_t>& members : plan_micro_batches(local, options.micro_batch_tokens)) {
    const ShardedMicroBatch mb = shard_micro_batch(model, local, members, *mesh, options.sp_mode);
    TokenBatch tokens;
    tokens.logprobs = sp::sharded_token_logprobs(model, mb.shard, attention, logprob_options,
                                                 options.entropy ? &tokens.entropy : nullptr);
    tokens.old_logprobs = mb.local(mb.full.old_logprobs);
    tokens.sampled_logprobs = mb.local(mb.full.sampled_logprobs);
    if (mb.full.ref_logprobs.defined()) tokens.ref_logprobs = mb.local(mb.full.ref_logprobs);
    tokens.advantages = mb.local(mb.full.advantages);
    tokens.mask = mb.shard.loss_mask;
    const at::Tensor micro_loss = aggregate_loss(options.aggregation, loss(tokens), mb.shard.loss_mask, step,
                                                 mb.full.response_tokens.to(weight.device()));
    micro_loss.backward();
    total += micro_loss.detach().to(at::kCPU, at::kDouble);
    ++result.micro_batches;
  }
  // Every rank's contribution: SP ranks saw their tokens, DP ranks their sequences. The vision tower
  // is frozen (its rows come from the cache) and is skipped.
  for (auto& item : model.named_parameters()) {
    at::Tensor& param = item.value();
    if (!param.requires_grad() || item.key().rfind("visual.", 0) == 0) continue;
    if (!param.grad().defined()) param.mutable_grad() = at::zeros_like(param);
    sp::all_reduce_sum(mesh->world(), param.mutable_grad());
  }
  sp::all_reduce_sum(mesh->world(), total);
  result.loss = total.item<double>();
  return result;
}

}  // namespace lvrl::trainer
