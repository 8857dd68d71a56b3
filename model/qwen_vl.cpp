#include "model/qwen_vl.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/tensor_format.h"

namespace lvrl::model {

QwenVLImpl::QwenVLImpl(const QwenConfig& config) : config_(config) {
  config.validate("model config");
  visual = register_module("visual", VisionTower(config.vision));
  model = register_module("model", TextModel(config.text));
  if (!config.text.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head",
        torch::nn::Linear(
            torch::nn::LinearOptions(config.text.hidden_size, config.text.vocab_size).bias(false)));
  }
}

void QwenVLImpl::set_attention(std::shared_ptr<AttentionBackend> attention) {
  visual->set_attention(attention);
  model->set_attention(std::move(attention));
}

void QwenVLImpl::set_text_attention(std::shared_ptr<AttentionBackend> attention) {
  model->set_attention(std::move(attention));
}

at::Tensor QwenVLImpl::encode_video(const at::Tensor& pixel_values, const std::vector<GridTHW>& grids) {
  return visual->forward(pixel_values, grids);
}

at::Tensor QwenVLImpl::embed(const at::Tensor& input_ids, const at::Tensor& video_embeds) {
  const at::Device device = model->embed_tokens->weight.device();
  at::Tensor ids = input_ids.to(device);
  at::Tensor embeds = model->embed_tokens(ids);  // [B, S, D]
  const int64_t image_tokens = (ids == config_.image_token_id).sum().item<int64_t>();
  if (image_tokens > 0) {
    throw InputError({"", 0, "input_ids", "<|image_pad|>"},
                     fmt::format("{} image tokens in the input; lvrl feeds videos only", image_tokens));
  }
  at::Tensor slots = ids == config_.video_token_id;  // [B, S]
  const int64_t video_tokens = slots.sum().item<int64_t>();
  const int64_t rows = video_embeds.defined() ? video_embeds.size(0) : 0;
  if (video_tokens != rows) {
    throw InputError(
        {"", 0, "video_embeds", std::to_string(rows)},
        fmt::format("the input has {} <|video_pad|> tokens but {} video embedding rows", video_tokens, rows));
  }
  if (rows == 0) return embeds;
  LVRL_ASSERT(video_embeds.dim() == 2 && video_embeds.size(1) == embeds.size(2),
              fmt::format("video_embeds {} for hidden size {}", video_embeds.sizes(), embeds.size(2)));
  return embeds.masked_scatter(slots.unsqueeze(-1).expand_as(embeds), video_embeds.to(embeds.scalar_type()));
}

RopeIndex QwenVLImpl::positions(const ModelInput& input) const {
  RopeIndexInput rope;
  rope.input_ids = input.input_ids.to(at::kCPU);
  if (input.attention_mask.defined()) rope.attention_mask = input.attention_mask.to(at::kCPU);
  rope.video_grids = input.video_grids;
  rope.second_per_grid_ts = input.second_per_grid_ts;
  rope.temporal_rule = input.temporal_rule;
  return get_rope_index(config_, rope);
}

namespace {
at::Tensor video_embeddings(QwenVLImpl& model, const ModelInput& input) {
  if (input.video_embeds.defined()) {
    LVRL_ASSERT(!input.pixel_values_videos.defined(), "videos given both as pixels and as embeddings");
    return input.video_embeds;
  }
  if (input.pixel_values_videos.defined())
    return model.encode_video(input.pixel_values_videos, input.video_grids);
  return at::Tensor();
}

// Valid tokens per row: the attention mask's row sums (rows are right-padded), else S.
std::vector<int64_t> valid_lengths(const ModelInput& input) {
  const int64_t batch = input.input_ids.size(0), seq = input.input_ids.size(1);
  if (!input.attention_mask.defined()) return std::vector<int64_t>(batch, seq);
  at::Tensor counts = input.attention_mask.to(at::kCPU).to(at::kLong).sum(1);
  return std::vector<int64_t>(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + batch);
}
}  // namespace

at::Tensor QwenVLImpl::hidden_states(const ModelInput& input) {
  at::Tensor embeds = embed(input.input_ids, video_embeddings(*this, input));
  at::Tensor positions = this->positions(input).positions.to(embeds.device());
  return model->forward(embeds, positions);
}

at::Tensor QwenVLImpl::lm_head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

at::Tensor QwenVLImpl::logits(const at::Tensor& hidden) const {
  at::Tensor out = at::linear(hidden, lm_head_weight());
  return out.scalar_type() == at::kDouble ? out : out.to(at::kFloat);
}

at::Tensor QwenVLImpl::prefill(const ModelInput& input, DenseKVCache& cache, int64_t chunk,
                               const PrefillProgress& progress) {
  const int64_t batch = input.input_ids.size(0), seq = input.input_ids.size(1);
  LVRL_ASSERT(cache.batch() == batch, fmt::format("cache of batch {} for {} prompts", cache.batch(), batch));
  for (int64_t row = 0; row < batch; ++row) {
    LVRL_ASSERT(cache.length(row) == 0, fmt::format("prefill into a cache whose row {} is not empty", row));
  }
  const std::vector<int64_t> valid = valid_lengths(input);
  for (int64_t row = 0; row < batch; ++row) {
    if (valid[row] == 0)
      throw InputError({"", 0, "attention_mask", fmt::format("row {}", row)}, "an empty prompt");
  }
  at::Tensor embeds = embed(input.input_ids, video_embeddings(*this, input));  // [B, S, D]
  at::Tensor positions = this->positions(input).positions;                     // [3, B, S] CPU
  // Chunks of the prompt go through every layer in turn, each attending to the cached earlier chunks
  // (a row's padding past its valid tokens is written but never counted).
  const int64_t step = chunk > 0 ? std::min(chunk, seq) : seq;
  std::vector<at::Tensor> last(batch);
  for (int64_t start = 0; start < seq; start += step) {
    const int64_t n = std::min(step, seq - start);
    at::Tensor hidden =
        model->forward(embeds.narrow(1, start, n), positions.narrow(2, start, n).to(embeds.device()), &cache);
    std::vector<int64_t> chunk_valid(batch);
    for (int64_t row = 0; row < batch; ++row) {
      chunk_valid[row] = std::clamp<int64_t>(valid[row] - start, 0, n);
      if (valid[row] - 1 >= start && valid[row] - 1 < start + n)
        last[row] = hidden[row][valid[row] - 1 - start];
    }
    cache.advance(chunk_valid);
    if (progress) progress(start + n, seq);
  }
  // Each row continues at its largest position id + 1.
  for (int64_t row = 0; row < batch; ++row) {
    cache.set_next_position(row, positions.select(1, row).narrow(1, 0, valid[row]).max().item<int64_t>() + 1);
  }
  return logits(at::stack(last));
}

at::Tensor QwenVLImpl::decode(const at::Tensor& tokens, KVCache& cache) {
  const int64_t batch = cache.batch();
  LVRL_ASSERT(tokens.dim() == 1 && tokens.size(0) == batch,
              fmt::format("decode tokens {} for a cache of batch {}", tokens.sizes(), batch));
  at::Tensor embeds = embed(tokens.view({batch, 1}), at::Tensor());
  at::Tensor hidden = model->forward(embeds, cache.next_positions(1).to(embeds.device()), &cache);
  cache.advance(std::vector<int64_t>(batch, 1));
  return logits(hidden.select(1, 0));
}

void init_weights(QwenVLImpl& model, uint64_t seed) {
  at::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : model.named_parameters()) {
    at::Tensor& param = item.value();
    const std::string& name = item.key();
    at::Tensor value;
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      value = at::zeros(param.sizes(), at::kFloat);
    } else if (param.dim() == 1) {  // norm weights
      value = at::ones(param.sizes(), at::kFloat);
    } else {
      value = at::normal(0.0, 0.02, param.sizes(), generator, at::TensorOptions().dtype(at::kFloat));
    }
    param.copy_(value);
  }
}

}  // namespace lvrl::model
