// One micro-batch of a TrainBatch as the model's input: full right-padded sequences [B, S], the
// tokens to score, and each scored token's per-token values moved to the position that predicts it
// (token j is predicted at position j − 1), ready for sp::shard_sequence and sp::shard. The gradient
// pass (policy_gradient.h) and the no-gradient scoring pass (response_logprobs.h) cut and assemble
// micro-batches the same way, so the log-probs one recomputes are the ones the other trains on.
#pragma once

#include <ATen/Tensor.h>

#include <vector>

#include "model/qwen_vl.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "sp/vlm_shard.h"
#include "trainer/train_batch.h"

namespace lvrl::trainer {

struct MicroBatch {
  model::ModelInput input;     // input_ids / attention_mask [B, S], one video grid per row with a video
  at::Tensor video_rows;       // [N, D] each distinct video of the micro-batch once (undefined: none)
  at::Tensor video_row_start;  // [B] int64: row b's first video row in video_rows
  at::Tensor scored;           // [B, S] bool, by token: the response tokens
  // [B, S] float64, by predicting position; 0 elsewhere. ref_logprobs only when every sequence has them.
  at::Tensor old_logprobs, sampled_logprobs, ref_logprobs, advantages;
  at::Tensor response_tokens;  // [B] int64: each answer's token count
};

// batch.sequences[members[0]], … as one micro-batch.
MicroBatch assemble_micro_batch(const TrainBatch& batch, const std::vector<int64_t>& members);

// The micro-batch and this SP rank's shard of it (sp::shard_sequence: positions and the label shift
// decided on the whole sequence, then split; the video rows in the model's dtype and device).
struct ShardedMicroBatch {
  MicroBatch full;
  sp::ShardedSequence shard;
  // This rank's part of a [B, S] by-position tensor of `full`, on the model's device and dtype.
  at::Tensor local(const at::Tensor& by_position) const;
  at::Tensor weight;  // the LM head's weight: device and dtype of the model
  int sp_rank = 0;
};
ShardedMicroBatch shard_micro_batch(model::QwenVLImpl& model, const TrainBatch& batch,
                                    const std::vector<int64_t>& members, const sp::Mesh& mesh,
                                    sp::SpMode mode);

}  // namespace lvrl::trainer
