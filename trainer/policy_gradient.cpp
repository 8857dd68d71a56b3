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

// A micro-batch as full sequences [B, S]: the model input, which tokens are scored, and each
// scored token's values at the position that predicts it (index j − 1 for token j).
struct MicroBatch {
  model::ModelInput input;
  at::Tensor video_rows;                                  // [N, D] each distinct video once
  at::Tensor video_row_start;                             // [B] int64
  at::Tensor scored;                                      // [B, S] bool, by token
  at::Tensor old_logprobs, sampled_logprobs, advantages;  // [B, S] float64, by position
  at::Tensor response_tokens;                             // [B] each answer's token count
};

MicroBatch assemble(const TrainBatch& batch, const std::vector<int64_t>& members) {
  const auto rows = static_cast<int64_t>(members.size());
  int64_t longest = 0;
  for (int64_t i : members) longest = std::max(longest, batch.sequences[i].length());
  MicroBatch mb;
  mb.input.input_ids = at::zeros({rows, longest}, at::kLong);
  mb.input.attention_mask = at::zeros({rows, longest}, at::kLong);
  mb.scored = at::zeros({rows, longest}, at::kBool);
  mb.response_tokens = at::zeros({rows}, at::kLong);
  for (at::Tensor* values : {&mb.old_logprobs, &mb.sampled_logprobs, &mb.advantages}) {
    *values = at::zeros({rows, longest}, at::kDouble);
  }
  std::map<int64_t, int64_t> video_offset;  // batch video → first row in video_rows
  std::vector<at::Tensor> videos;
  int64_t offset = 0;
  std::vector<int64_t> starts(rows, 0);
  for (int64_t b = 0; b < rows; ++b) {
    const TrainSequence& sequence = batch.sequences[members[b]];
    const int64_t length = sequence.length();
    mb.input.input_ids[b].narrow(0, 0, length).copy_(at::tensor(sequence.ids, at::kLong));
    mb.input.attention_mask[b].narrow(0, 0, length).fill_(1);
    if (sequence.video >= 0) {
      const TrainVideo& video = batch.videos[sequence.video];
      auto [it, added] = video_offset.emplace(sequence.video, offset);
      if (added) {
        videos.push_back(video.rows);
        offset += video.rows.size(0);
      }
      starts[b] = it->second;
      mb.input.video_grids.push_back(video.grid);
      mb.input.second_per_grid_ts.push_back(video.second_per_grid_t);
    }
    const int64_t first = sequence.response_start, count = sequence.response_tokens();
    if (count == 0) continue;
    mb.scored[b].narrow(0, first, count).fill_(true);
    // Token j is predicted at position j − 1.
    mb.old_logprobs[b].narrow(0, first - 1, count).copy_(at::tensor(sequence.old_logprobs).to(at::kDouble));
    mb.sampled_logprobs[b]
        .narrow(0, first - 1, count)
        .copy_(at::tensor(sequence.sampled_logprobs).to(at::kDouble));
    mb.advantages[b].narrow(0, first - 1, count).fill_(sequence.advantage);
    mb.response_tokens[b] = count;
  }
  if (!videos.empty()) mb.video_rows = at::cat(videos);
  mb.video_row_start = at::tensor(starts, at::kLong);
  return mb;
}

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
  const at::ScalarType dtype = weight.scalar_type();
  auto attention = std::make_shared<sp::SequenceParallelAttention>(mesh, options.sp_mode);
  model::ScopedTextAttention scope(*model.model, attention);
  const bool recompute_before = model.model->recompute();
  model.model->set_recompute(options.recompute);
  model::LogprobOptions logprob_options;
  logprob_options.temperature = local.temperature;
  at::Tensor total = at::zeros({1}, at::kDouble);
  for (const std::vector<int64_t>& members : plan_micro_batches(local, options.micro_batch_tokens)) {
    MicroBatch mb = assemble(local, members);
    const at::Tensor video_rows =
        mb.video_rows.defined() ? mb.video_rows.to(weight.device(), dtype) : at::Tensor();
    sp::ShardedSequence shard = sp::shard_sequence(model, mb.input, video_rows, mb.scored, *mesh,
                                                   options.sp_mode, mb.video_row_start);
    const int rank = mesh->sp_rank();
    auto local_values = [&](const at::Tensor& full) {
      return sp::shard(full, 1, shard.layout, rank, 0).to(weight.device(), dtype);
    };
    TokenBatch tokens;
    tokens.logprobs = sp::sharded_token_logprobs(model, shard, attention, logprob_options);
    tokens.old_logprobs = local_values(mb.old_logprobs);
    tokens.sampled_logprobs = local_values(mb.sampled_logprobs);
    tokens.advantages = local_values(mb.advantages);
    tokens.mask = shard.loss_mask;
    const StepNormaliser step{static_cast<double>(result.tokens), static_cast<double>(result.sequences)};
    const at::Tensor micro_loss = aggregate_loss(options.aggregation, loss(tokens), shard.loss_mask, step,
                                                 mb.response_tokens.to(weight.device()));
    micro_loss.backward();
    total += micro_loss.detach().to(at::kCPU, at::kDouble);
    ++result.micro_batches;
  }
  model.model->set_recompute(recompute_before);
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
