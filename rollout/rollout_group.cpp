#include "rollout/rollout_group.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <vector>

#include "core/error.h"

namespace lvrl::rollout {

cache::RolloutGroup to_rollout_group(const GenerationRequest& request, const GenerationResult& result,
                                     const model::QwenConfig& config, const GroupContext& context) {
  LVRL_ASSERT(static_cast<int64_t>(result.answers.size()) == request.n,
              fmt::format("{} answers for a request of {}", result.answers.size(), request.n));
  cache::RolloutGroup group;
  group.group_id = context.group_id;
  group.prompt_id = context.prompt_id;
  group.policy_version = context.policy_version;
  group.embedding_key = context.embedding_key;
  group.extra = context.extra;

  const at::Tensor ids = request.prompt.input_ids.to(at::kCPU).to(at::kInt).contiguous();  // [1, S]
  const std::vector<int32_t> prompt(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.numel());
  std::vector<std::array<int64_t, 3>> grids(request.prompt.video_grids.begin(),
                                            request.prompt.video_grids.end());
  cache::store_prompt(group, prompt, static_cast<int32_t>(config.video_token_id), std::move(grids),
                      config.vision.spatial_merge_size);
  group.second_per_grid_ts = request.prompt.second_per_grid_ts;
  if (group.second_per_grid_ts.empty()) group.second_per_grid_ts.assign(group.video_grids.size(), 1.0);

  const SamplingParams& sampling = request.sampling;
  group.sampling = {sampling.temperature, sampling.top_p, sampling.min_p, sampling.top_k,
                    sampling.max_new_tokens};
  for (const GeneratedAnswer& answer : result.answers) {
    LVRL_ASSERT(answer.logprobs.size() == answer.token_ids.size(),
                "an answer without log-probs (a rank other than 0 under SP?)");
    cache::RolloutSample sample;
    sample.response_ids.assign(answer.token_ids.begin(), answer.token_ids.end());
    sample.logprobs = answer.logprobs;
    sample.sampled_logprobs = answer.sampled_logprobs;
    sample.finish_reason = finish_reason_name(answer.finish);
    sample.seed = answer.seed;
    group.samples.push_back(std::move(sample));
  }
  return group;
}

}  // namespace lvrl::rollout
