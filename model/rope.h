// Rotary position embeddings of both towers (docs/model.md#vision-rotary-table, #m-rope…#decode-positions).
//
// Text: M-RoPE. Every token has three position ids (temporal, height, width); frequency j of the
// head takes its angle from the axis its mrope_section chunk names. Text tokens carry the same id on
// all three axes, so text-only input is ordinary RoPE. get_rope_index assigns the 3-D ids of a
// prompt with image/video blocks; decode steps continue at cache index + rope_delta.
// Vision: 2-D rotary over (patch row, patch column), in fp32, in the patch-row order of
// video::patchify_video (2×2 merge blocks in raster order).
#pragma once

#include <ATen/Tensor.h>

#include <array>
#include <utility>
#include <vector>

#include "model/qwen_config.h"

namespace lvrl::model {

using GridTHW = std::array<int64_t, 3>;  // (temporal patches, patch rows, patch columns)

// A video block's temporal id from its grid index τ: the pitfall in docs/model.md#3-d-position-ids.
enum class TemporalRule {
  FloatThenFloor,  // ⌊τ · second_per_grid_t · tokens_per_second⌋: official training code, transformers ≥
                   // #48669
  IntegerCastFirst,  // τ · int(second_per_grid_t) · tokens_per_second: transformers 4.49–4.57
};

struct RopeIndexInput {
  at::Tensor input_ids;       // [B, S] int64 (CPU)
  at::Tensor attention_mask;  // [B, S] int64/bool, undefined = all ones; padding keeps id 1
  std::vector<GridTHW>
      image_grids;  // one per <|vision_start|><|image_pad|> block, prompt order over the batch
  std::vector<GridTHW> video_grids;        // one per video block, prompt order over the batch
  std::vector<double> second_per_grid_ts;  // per video (temporal_patch_size / sample fps); empty = 1.0 each
  TemporalRule temporal_rule = TemporalRule::FloatThenFloor;
};

struct RopeIndex {
  at::Tensor positions;    // [3, B, S] int64 (T, H, W ids)
  at::Tensor rope_deltas;  // [B] int64: (max id + 1) - S; decode id at cache index c is c + delta
};

// A block's token count must equal t·h·w / merge²; a mismatch between the ids and the grids is an
// InputError naming the block and both counts.
RopeIndex get_rope_index(const QwenConfig& config, const RopeIndexInput& input);

// [3, B, n] int64 ids for n new tokens per row that start at cache index start[b] (decode / chunked
// prefill without vision): start[b] + i + rope_deltas[b] on all three axes.
at::Tensor decode_positions(const at::Tensor& start /*[B] int64*/, const at::Tensor& rope_deltas /*[B]*/,
                            int64_t n);

// Text M-RoPE tables. inv_freq_j = θ^(-2j/head_dim) in fp32; cos/sin computed in fp32 and cast to
// `dtype` (the activation dtype, as transformers does).
struct RopeTables {
  at::Tensor cos, sin;  // [B, S, head_dim]
};
RopeTables mrope_tables(const TextConfig& config, const at::Tensor& positions /*[3,B,S]*/,
                        at::ScalarType dtype, const at::Device& device);

// x·cos + rotate_half(x)·sin, rotate_half([x1, x2]) = [-x2, x1] over the two halves of the head.
// x [B, S, H, D], cos/sin [B, S, D] (broadcast over heads); computed in x's dtype.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// Vision angle table, fp32 [N, head_dim/2]: for the patch at (row r, column q) the angles
// [r·inv_freq_0..k-1, q·inv_freq_0..k-1] with inv_freq_j = 10000^(-2j/(head_dim/2)), k = head_dim/4,
// rows in patchify order, repeated for each temporal slice, inputs concatenated.
at::Tensor vision_rotary_angles(const VisionConfig& config, const std::vector<GridTHW>& grids);

}  // namespace lvrl::model
