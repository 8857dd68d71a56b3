#include "sp/decode_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <vector>

#include "core/error.h"
#include "core/tensor_format.h"
#include "sp/comm.h"
#include "sp/sp_attention.h"
#include "sp/vlm_shard.h"

namespace lvrl::sp {

namespace {
// Keeps this rank's keys/values while the SP backend attends over the whole sequence.
class ShardCapture : public model::KVCache {
 public:
  explicit ShardCapture(int64_t layers) : keys(layers), values(layers) { next_position_.assign(1, 0); }
  int64_t batch() const override { return 1; }
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    model::AttentionBackend& attention) override {
    keys.at(layer) = k;
    values.at(layer) = v;
    model::AttentionSpec spec;
    spec.mask = model::MaskKind::Causal;
    return attention.forward(q, k, v, spec).out;
  }
  std::vector<at::Tensor> keys, values;  // per layer [1, l, H_kv, D]
};
}  // namespace

model::PrefilledPrompt prefill_prompt_sharded(model::QwenVLImpl& model, const model::ModelInput& input,
                                              const std::shared_ptr<Mesh>& mesh, SpMode mode) {
  LVRL_ASSERT(input.input_ids.dim() == 2 && input.input_ids.size(0) == 1,
              fmt::format("prefill_prompt_sharded of input_ids {} (one prompt)", input.input_ids.sizes()));
  LVRL_ASSERT(!input.pixel_values_videos.defined(), "prefill_prompt_sharded takes video rows, not pixels");
  const int64_t seq = input.input_ids.size(1);
  const at::Tensor none = at::zeros({1, seq}, at::kBool);
  ShardedSequence shard = shard_sequence(model, input, input.video_embeds, none, *mesh, mode);
  auto attention = std::make_shared<SequenceParallelAttention>(mesh, mode);
  attention->set_layout(shard.layout);

  const auto layers = static_cast<int64_t>(model.model->layers->size());
  ShardCapture capture(layers);
  at::Tensor hidden;  // [1, l, D]
  {
    model::ScopedTextAttention scope(*model.model, attention);
    hidden = model.model->forward(shard.embeds, shard.positions, &capture);
  }
  const int rank = mesh->sp_rank();
  const at::Tensor indices = shard.layout.token_indices(rank);  // [l] global index of each local token
  const at::Tensor real = (indices < seq).nonzero().squeeze(1).to(hidden.device());
  auto prefix = std::make_shared<model::PromptPrefix>();
  for (int64_t layer = 0; layer < layers; ++layer) {
    prefix->keys.push_back(capture.keys[layer].index_select(1, real));
    prefix->values.push_back(capture.values[layer].index_select(1, real));
  }
  prefix->next_position = model.positions(input).positions.max().item<int64_t>() + 1;

  // The prompt's last token lives on one rank: it computes the logits and broadcasts them.
  int owner = -1;
  for (int r = 0; r < shard.layout.ranks() && owner < 0; ++r) {
    if ((shard.layout.token_indices(r) == seq - 1).any().item<bool>()) owner = r;
  }
  LVRL_ASSERT(owner >= 0, fmt::format("no rank holds token {} of {}", seq - 1, seq));
  const int64_t vocab = model.lm_head_weight().size(0);
  at::Tensor logits = at::empty(
      {vocab}, hidden.options().dtype(hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
  if (rank == owner) {
    const int64_t local = (indices == seq - 1).nonzero().item<int64_t>();
    logits.copy_(model.logits(hidden[0][local]));
  }
  broadcast(mesh->sp(), logits, owner);
  return {prefix, logits};
}

std::unique_ptr<model::SharedPrefixKVCache> make_sharded_decode_cache(const model::TextConfig& config,
                                                                      int64_t capacity, at::ScalarType dtype,
                                                                      const at::Device& device,
                                                                      std::shared_ptr<Mesh> mesh) {
  const int ranks = mesh->sp_size();
  model::TokenPlacement placement{mesh->sp_rank(), ranks};
  auto combine = [mesh, ranks](at::Tensor& out, at::Tensor& lse) {
    // out [B, n, H, D] and lse [B, H, n] travel packed in one all-gather; every rank folds the parts
    // in rank order (the same arithmetic everywhere, so every rank holds the same result).
    const int64_t batch = out.size(0), out_width = out[0].numel();
    const at::Tensor packed = at::cat({out.reshape({batch, -1}), lse.reshape({batch, -1})}, 1);
    const std::vector<at::Tensor> parts = all_gather_cat(mesh->sp(), packed, 0).split(batch, 0);
    at::Tensor merged_out = parts[0].narrow(1, 0, out_width).reshape(out.sizes()).clone();
    at::Tensor merged_lse = parts[0].narrow(1, out_width, lse[0].numel()).reshape(lse.sizes()).clone();
    for (int r = 1; r < ranks; ++r) {
      model::merge_attention_partial(merged_out, merged_lse,
                                     parts[r].narrow(1, 0, out_width).reshape(out.sizes()),
                                     parts[r].narrow(1, out_width, lse[0].numel()).reshape(lse.sizes()));
    }
    out = merged_out;
    lse = merged_lse;
  };
  return std::make_unique<model::SharedPrefixKVCache>(config, capacity, dtype, device, placement, combine);
}

}  // namespace lvrl::sp
