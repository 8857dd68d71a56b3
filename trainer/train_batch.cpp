#include "trainer/train_batch.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace lvrl::trainer {

TrainBatch batch_from_groups(const std::vector<cache::RolloutGroup>& groups,
                             const std::vector<at::Tensor>& video_rows,
                             const std::vector<std::vector<double>>& advantages) {
  LVRL_ASSERT(groups.size() == video_rows.size() && groups.size() == advantages.size(),
              fmt::format("{} groups, {} video rows, {} advantage lists", groups.size(), video_rows.size(),
                          advantages.size()));
  TrainBatch batch;
  for (size_t g = 0; g < groups.size(); ++g) {
    const cache::RolloutGroup& group = groups[g];
    LVRL_ASSERT(advantages[g].size() == group.samples.size(),
                fmt::format("group {}: {} advantages for {} answers", group.group_id, advantages[g].size(),
                            group.samples.size()));
    if (g == 0) batch.temperature = group.sampling.temperature;
    if (group.sampling.temperature != batch.temperature) {
      throw InputError({"", 0, "sampling.temperature", fmt::format("{}", group.sampling.temperature)},
                       fmt::format("group {} was sampled at another temperature than the step's first ({})",
                                   group.group_id, batch.temperature));
    }
    int64_t video = -1;
    if (!group.video_grids.empty()) {
      LVRL_ASSERT(group.video_grids.size() == 1,
                  fmt::format("group {}: one video per prompt", group.group_id));
      const model::GridTHW grid = group.video_grids[0];
      const int64_t rows =
          grid[0] * grid[1] * grid[2] / (group.spatial_merge_size * group.spatial_merge_size);
      if (!video_rows[g].defined() || video_rows[g].dim() != 2 || video_rows[g].size(0) != rows) {
        throw InputError({"", 0, "embedding", group.embedding_key},
                         fmt::format("group {}: the video rows do not match its grid ({} rows expected)",
                                     group.group_id, rows));
      }
      video = static_cast<int64_t>(batch.videos.size());
      batch.videos.push_back({video_rows[g], grid, group.second_per_grid_ts.at(0)});
    }
    const std::vector<int32_t> prompt = group.expand_prompt();
    for (size_t i = 0; i < group.samples.size(); ++i) {
      const cache::RolloutSample& sample = group.samples[i];
      TrainSequence sequence;
      sequence.ids.assign(prompt.begin(), prompt.end());
      sequence.ids.insert(sequence.ids.end(), sample.response_ids.begin(), sample.response_ids.end());
      sequence.response_start = static_cast<int64_t>(prompt.size());
      sequence.video = video;
      sequence.old_logprobs = sample.logprobs;
      sequence.sampled_logprobs = sample.sampled_logprobs;
      sequence.advantage = advantages[g][i];
      sequence.group = static_cast<int64_t>(g);
      batch.sequences.push_back(std::move(sequence));
    }
  }
  return batch;
}

TrainBatch dp_share(const TrainBatch& batch, int dp_rank, int dp_size) {
  TrainBatch share;
  share.temperature = batch.temperature;
  std::vector<int64_t> video_index(batch.videos.size(), -1);
  for (size_t i = static_cast<size_t>(dp_rank); i < batch.sequences.size();
       i += static_cast<size_t>(dp_size)) {
    TrainSequence sequence = batch.sequences[i];
    if (sequence.video >= 0) {
      int64_t& mapped = video_index[sequence.video];
      if (mapped < 0) {
        mapped = static_cast<int64_t>(share.videos.size());
        share.videos.push_back(batch.videos[sequence.video]);
      }
      sequence.video = mapped;
    }
    share.sequences.push_back(std::move(sequence));
  }
  return share;
}

std::vector<std::vector<int64_t>> plan_micro_batches(const TrainBatch& batch, int64_t token_budget) {
  std::vector<std::vector<int64_t>> plan;
  std::vector<int64_t> current;
  int64_t longest = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(batch.sequences.size()); ++i) {
    const int64_t length = batch.sequences[i].length();
    const int64_t padded = (static_cast<int64_t>(current.size()) + 1) * std::max(longest, length);
    if (!current.empty() && padded > token_budget) {
      plan.push_back(std::move(current));
      current.clear();
      longest = 0;
    }
    current.push_back(i);
    longest = std::max(longest, length);
  }
  if (!current.empty()) plan.push_back(std::move(current));
  return plan;
}

}  // namespace lvrl::trainer
