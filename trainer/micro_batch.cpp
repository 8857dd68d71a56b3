#include "trainer/micro_batch.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/error.h"

namespace lvrl::trainer {

namespace {

// values [count] → row's positions first − 1 … first + count − 2 (the positions predicting them).
template <typename T>
void place(at::Tensor& row, const std::vector<T>& values, int64_t first) {
  row.narrow(0, first - 1, static_cast<int64_t>(values.size())).copy_(at::tensor(values).to(at::kDouble));
}

}  // namespace

MicroBatch assemble_micro_batch(const TrainBatch& batch, const std::vector<int64_t>& members) {
  const auto rows = static_cast<int64_t>(members.size());
  int64_t longest = 0;
  bool with_reference = rows > 0;
  for (int64_t i : members) {
    const TrainSequence& sequence = batch.sequences[i];
    longest = std::max(longest, sequence.length());
    with_reference = with_reference && !sequence.ref_logprobs.empty();
  }
  MicroBatch mb;
  mb.input.input_ids = at::zeros({rows, longest}, at::kLong);
  mb.input.attention_mask = at::zeros({rows, longest}, at::kLong);
  mb.scored = at::zeros({rows, longest}, at::kBool);
  mb.response_tokens = at::zeros({rows}, at::kLong);
  for (at::Tensor* values : {&mb.old_logprobs, &mb.sampled_logprobs, &mb.advantages}) {
    *values = at::zeros({rows, longest}, at::kDouble);
  }
  if (with_reference) mb.ref_logprobs = at::zeros({rows, longest}, at::kDouble);
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
    LVRL_ASSERT(first >= 1 && static_cast<int64_t>(sequence.old_logprobs.size()) == count &&
                    static_cast<int64_t>(sequence.sampled_logprobs.size()) == count &&
                    (sequence.token_advantages.empty() ||
                     static_cast<int64_t>(sequence.token_advantages.size()) == count) &&
                    (!with_reference || static_cast<int64_t>(sequence.ref_logprobs.size()) == count),
                fmt::format("a sequence of {} tokens from {} with {} old, {} sampled, {} reference log-probs "
                            "and {} token advantages",
                            length, first, sequence.old_logprobs.size(), sequence.sampled_logprobs.size(),
                            sequence.ref_logprobs.size(), sequence.token_advantages.size()));
    mb.response_tokens[b] = count;
    if (count == 0) continue;
    mb.scored[b].narrow(0, first, count).fill_(true);
    at::Tensor old_row = mb.old_logprobs[b], sampled_row = mb.sampled_logprobs[b],
               advantage_row = mb.advantages[b];
    place(old_row, sequence.old_logprobs, first);
    place(sampled_row, sequence.sampled_logprobs, first);
    if (with_reference) {
      at::Tensor ref_row = mb.ref_logprobs[b];
      place(ref_row, sequence.ref_logprobs, first);
    }
    if (sequence.token_advantages.empty()) {
      advantage_row.narrow(0, first - 1, count).fill_(sequence.advantage);
    } else {
      place(advantage_row, sequence.token_advantages, first);
    }
  }
  if (!videos.empty()) mb.video_rows = at::cat(videos);
  mb.video_row_start = at::tensor(starts, at::kLong);
  return mb;
}

at::Tensor ShardedMicroBatch::local(const at::Tensor& by_position) const {
  return sp::shard(by_position, 1, shard.layout, sp_rank, 0).to(weight.device(), weight.scalar_type());
}

ShardedMicroBatch shard_micro_batch(model::QwenVLImpl& model, const TrainBatch& batch,
                                    const std::vector<int64_t>& members, const sp::Mesh& mesh,
                                    sp::SpMode mode) {
  ShardedMicroBatch out;
  out.full = assemble_micro_batch(batch, members);
  out.weight = model.lm_head_weight();
  out.sp_rank = mesh.sp_rank();
  const at::Tensor video_rows = out.full.video_rows.defined()
                                    ? out.full.video_rows.to(out.weight.device(), out.weight.scalar_type())
                                    : at::Tensor();
  out.shard = sp::shard_sequence(model, out.full.input, video_rows, out.full.scored, mesh, mode,
                                 out.full.video_row_start);
  return out;
}

}  // namespace lvrl::trainer
