// A VLM batch under sequence parallelism (MR-SP): the vision tower encodes each rank's share of the
// video frames (stage 1), and the language model runs on each rank's share of the tokens (stage 2).
//
// Everything position-dependent is decided on the whole sequence before the split: the M-RoPE ids
// (get_rope_index needs every vision block), the label shift (the target of position i is token
// i+1, which may live on another rank), and which positions carry a loss. Each rank then embeds
// only its tokens, gathering the video-embedding rows its <|video_pad|> positions need. Log-probs
// are computed where the hidden states are, for the rows that carry a loss; only those per-token
// values travel (never logits).
#pragma once

#include <ATen/Tensor.h>

#include <memory>
#include <vector>

#include "model/qwen_vl.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "sp/sp_attention.h"

namespace lvrl::sp {

// MR-SP stage 1: the temporal slices of all videos (in order) are split into SP-size contiguous
// runs, each rank encodes its run, and the rows are all-gathered: [Σ t·h·w/4, D] on every rank,
// equal to model.encode_video on all frames (attention never crosses temporal slices). Gradients
// reaching the gathered rows are summed over the SP group and sent back to the rank that encoded
// them, so a trained tower receives what single-device training would give it.
at::Tensor encode_video_sharded(model::QwenVLImpl& model, const at::Tensor& pixel_values,
                                const std::vector<model::GridTHW>& grids, const Mesh& mesh);
// The same with the vision tower alone (preprocessing loads no language model).
at::Tensor encode_video_sharded(model::VisionTowerImpl& tower, const at::Tensor& pixel_values,
                                const std::vector<model::GridTHW>& grids, const Mesh& mesh);

// The two halves of encode_video_sharded, for callers that must check every rank's encode before
// the gather (a rank whose encode threw would leave the others waiting in it).
struct VideoShard {
  std::vector<int64_t> rows;          // [SP] embedding rows each SP rank produces
  std::vector<model::GridTHW> grids;  // this rank's slice runs, one per video it has slices of
  int64_t pixel_start = 0;            // this rank's patch rows are pixel_values[pixel_start,
  int64_t pixel_rows = 0;             //   pixel_start + pixel_rows)
};
// Rank `rank` of `ranks` gets slices [rank·T/ranks, (rank+1)·T/ranks) of the videos' T slices in
// order. pixel_rows_total must be Σ t·h·w (InputError naming pixel_values otherwise).
VideoShard shard_video(const std::vector<model::GridTHW>& grids, int64_t merge_units, int64_t ranks,
                       int64_t rank, int64_t pixel_rows_total);
// This rank's share of pixel_values [N, patch_dim] through the tower → [shard.rows[rank], D]
// (an empty [0, D] joined to the tower's graph when it has no slices).
at::Tensor encode_video_shard(model::VisionTowerImpl& tower, const at::Tensor& pixel_values,
                              const VideoShard& shard);
// local [shard.rows[sp_rank], D] of every SP rank → [Σ rows, D] in rank order, on every rank; the
// gradient of a rank's rows is summed over the SP group (a collective: every SP rank calls it).
at::Tensor gather_video_rows(const at::Tensor& local, const VideoShard& shard, const Mesh& mesh);

struct ShardedSequence {
  SequenceLayout layout;
  at::Tensor embeds;     // [B, l, D] this rank's input embeddings (padding rows zero)
  at::Tensor positions;  // [3, B, l] M-RoPE ids taken from the whole sequence (padding: 1)
  at::Tensor targets;    // [B, l] int64 next token of each position (0 where none)
  at::Tensor loss_mask;  // [B, l] bool: the position's next-token prediction is scored
};

// input: full sequences [B, S] (right-padded rows via attention_mask); video_embeds [N, D] for the
// <|video_pad|> positions (from encode_video_sharded, or the cache); loss_mask [B, S] bool marks the
// *tokens* to be scored (a token at j is predicted at position j−1; j = 0 cannot be).
// video_row_start [B] int64 (optional): row b's pads take video_embeds rows video_row_start[b],
// video_row_start[b] + 1, …, so rows of one prompt (G answers) share one copy of its video rows.
// Undefined: the pads of all rows take consecutive rows in row-major order (N = Σ pads).
ShardedSequence shard_sequence(model::QwenVLImpl& model, const model::ModelInput& input,
                               const at::Tensor& video_embeds, const at::Tensor& loss_mask, const Mesh& mesh,
                               SpMode mode, const at::Tensor& video_row_start = {});

// Installs `attention` (with the shard's layout) as the model's text attention, runs the language
// model on this rank's shard and returns the log-probs of the targets at this rank's positions,
// [B, l] (0 where loss_mask is false), differentiable. Every SP rank must call it together.
// `entropy`, when given, receives the entropy of each scored position's distribution the same way
// ([B, l], 0 elsewhere, differentiable; model::token_entropy).
at::Tensor sharded_token_logprobs(model::QwenVLImpl& model, const ShardedSequence& shard,
                                  const std::shared_ptr<SequenceParallelAttention>& attention,
                                  const model::LogprobOptions& options = {}, at::Tensor* entropy = nullptr);

// Every rank's [B, l] values → the full [B, S] tensor of per-token values (position order), on
// every rank. Values only (no gradient), for rollout log-probs and checks.
at::Tensor gather_sequence(const at::Tensor& local, const SequenceLayout& layout, const Mesh& mesh);

// Sums every parameter's gradient over the SP group (each rank saw only its tokens).
void all_reduce_gradients(torch::nn::Module& module, const Mesh& mesh);

}  // namespace lvrl::sp
