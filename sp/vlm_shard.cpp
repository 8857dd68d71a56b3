#include "sp/vlm_shard.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "core/tensor_format.h"
#include "sp/comm.h"

namespace lvrl::sp {

namespace {

// Rows of every SP rank, concatenated in rank order (uneven counts). Backward: each rank's rows
// receive the sum over ranks of the gradient that reached them.
class GatherRows : public torch::autograd::Function<GatherRows> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& local,
                            const std::vector<int64_t>& counts, int64_t rank, c10d::ProcessGroup* group) {
    const int64_t widest = *std::max_element(counts.begin(), counts.end());
    at::Tensor padded = at::zeros({widest, local.size(1)}, local.options());
    padded.narrow(0, 0, local.size(0)).copy_(local);
    at::Tensor gathered = all_gather_cat(*group, padded, 0);  // [P·widest, D]
    std::vector<at::Tensor> parts;
    for (size_t r = 0; r < counts.size(); ++r) parts.push_back(gathered.narrow(0, r * widest, counts[r]));
    int64_t offset = 0;
    for (int64_t r = 0; r < rank; ++r) offset += counts[r];
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["rows"] = local.size(0);
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return at::cat(parts);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<c10d::ProcessGroup*>(ctx->saved_data["group"].toInt());
    at::Tensor total = grads[0].contiguous().clone();
    all_reduce_sum(*group, total);
    return {total.narrow(0, ctx->saved_data["offset"].toInt(), ctx->saved_data["rows"].toInt()), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

VideoShard shard_video(const std::vector<model::GridTHW>& grids, int64_t merge_units, int64_t ranks,
                       int64_t rank, int64_t pixel_rows_total) {
  LVRL_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks, fmt::format("rank {} of {}", rank, ranks));
  int64_t slices = 0;
  for (const auto& grid : grids) slices += grid[0];
  // Rank r encodes slices [r·T/P, (r+1)·T/P) of the videos' slices in order.
  auto first_slice = [&](int64_t r) { return r * slices / ranks; };
  VideoShard out;
  out.rows.assign(ranks, 0);
  int64_t pixel_start = -1;
  int64_t slice = 0, pixel_offset = 0;
  for (const auto& grid : grids) {
    const int64_t per_slice = grid[1] * grid[2];
    for (int64_t r = 0; r < ranks; ++r) {
      const int64_t begin = std::max(first_slice(r), slice),
                    end = std::min(first_slice(r + 1), slice + grid[0]);
      if (end <= begin) continue;
      out.rows[r] += (end - begin) * per_slice / merge_units;
      if (r == rank) {
        if (pixel_start < 0) pixel_start = pixel_offset + (begin - slice) * per_slice;
        out.pixel_rows += (end - begin) * per_slice;
        out.grids.push_back({end - begin, grid[1], grid[2]});
      }
    }
    slice += grid[0];
    pixel_offset += grid[0] * per_slice;
  }
  if (pixel_offset != pixel_rows_total) {
    throw InputError({"", 0, "pixel_values", fmt::format("{} rows", pixel_rows_total)},
                     fmt::format("the video grids describe {} patch rows", pixel_offset));
  }
  out.pixel_start = std::max<int64_t>(pixel_start, 0);
  return out;
}

at::Tensor encode_video_shard(model::VisionTowerImpl& tower, const at::Tensor& pixel_values,
                              const VideoShard& shard) {
  if (shard.grids.empty()) {
    const at::Tensor& like = tower.merger->ln_q->weight;
    return at::zeros({0, tower.config().out_hidden_size}, like.options()) * like.sum();  // joins the graph
  }
  return tower.forward(pixel_values.narrow(0, shard.pixel_start, shard.pixel_rows), shard.grids);
}

at::Tensor gather_video_rows(const at::Tensor& local, const VideoShard& shard, const Mesh& mesh) {
  if (mesh.sp_size() == 1) return local;
  return GatherRows::apply(local, shard.rows, mesh.sp_rank(), &mesh.sp());
}

at::Tensor encode_video_sharded(model::VisionTowerImpl& tower, const at::Tensor& pixel_values,
                                const std::vector<model::GridTHW>& grids, const Mesh& mesh) {
  const VideoShard shard =
      shard_video(grids, tower.config().merge_units(), mesh.sp_size(), mesh.sp_rank(), pixel_values.size(0));
  return gather_video_rows(encode_video_shard(tower, pixel_values, shard), shard, mesh);
}

at::Tensor encode_video_sharded(model::QwenVLImpl& model, const at::Tensor& pixel_values,
                                const std::vector<model::GridTHW>& grids, const Mesh& mesh) {
  return encode_video_sharded(*model.visual, pixel_values, grids, mesh);
}

ShardedSequence shard_sequence(model::QwenVLImpl& model, const model::ModelInput& input,
                               const at::Tensor& video_embeds, const at::Tensor& loss_mask, const Mesh& mesh,
                               SpMode mode, const at::Tensor& video_row_start) {
  const at::Tensor ids = input.input_ids.to(at::kCPU);
  const int64_t batch = ids.size(0), seq = ids.size(1);
  LVRL_ASSERT(loss_mask.sizes() == ids.sizes(),
              fmt::format("loss_mask {} for input_ids {}", loss_mask.sizes(), ids.sizes()));
  ShardedSequence out;
  out.layout = SequenceLayout::make(mode, mesh.ulysses_size(), mesh.ring_size(), seq, /*causal=*/true);
  const int rank = mesh.sp_rank();

  // Decided on the whole sequence: positions, the label shift, which predictions are scored.
  at::Tensor positions = model.positions(input).positions;  // [3, B, S]
  at::Tensor valid = input.attention_mask.defined() ? input.attention_mask.to(at::kCPU).to(at::kBool)
                                                    : at::ones({batch, seq}, at::kBool);
  at::Tensor targets = at::zeros({batch, seq}, at::kLong);
  at::Tensor scored = at::zeros({batch, seq}, at::kBool);
  if (seq > 1) {
    targets.narrow(1, 0, seq - 1).copy_(ids.narrow(1, 1, seq - 1));
    scored.narrow(1, 0, seq - 1)
        .copy_(loss_mask.to(at::kCPU).to(at::kBool).narrow(1, 1, seq - 1) & valid.narrow(1, 1, seq - 1) &
               valid.narrow(1, 0, seq - 1));
  }
  // Video rows fill the <|video_pad|> positions: in row-major order over the batch, or from each
  // row's own start (rows sharing one copy).
  at::Tensor is_video = ids == model.config().video_token_id;
  const int64_t rows = video_embeds.defined() ? video_embeds.size(0) : 0;
  at::Tensor video_row;  // [B, S] the embedding row of each pad position
  if (video_row_start.defined()) {
    LVRL_ASSERT(video_row_start.dim() == 1 && video_row_start.size(0) == batch,
                fmt::format("video_row_start {} for {} rows", video_row_start.sizes(), batch));
    video_row =
        is_video.to(at::kLong).cumsum(1) - 1 + video_row_start.to(at::kCPU).to(at::kLong).unsqueeze(1);
    const at::Tensor used = video_row.masked_select(is_video);
    if (used.numel() > 0 && (used.min().item<int64_t>() < 0 || used.max().item<int64_t>() >= rows)) {
      throw InputError({"", 0, "video_embeds", std::to_string(rows)},
                       fmt::format("the rows' <|video_pad|> tokens reach embedding rows {}..{} of {}",
                                   used.min().item<int64_t>(), used.max().item<int64_t>(), rows));
    }
  } else {
    const int64_t video_tokens = is_video.sum().item<int64_t>();
    if (video_tokens != rows) {
      throw InputError({"", 0, "video_embeds", std::to_string(rows)},
                       fmt::format("the input has {} <|video_pad|> tokens but {} video embedding rows",
                                   video_tokens, rows));
    }
    video_row = (is_video.reshape(-1).to(at::kLong).cumsum(0) - 1).reshape({batch, seq});
  }

  const at::Device device = model.model->embed_tokens->weight.device();
  at::Tensor local_ids = shard(ids, 1, out.layout, rank).to(device);
  at::Tensor local_video = shard(is_video, 1, out.layout, rank, 0).to(device);
  at::Tensor real = shard(at::ones({batch, seq}, at::kBool), 1, out.layout, rank, 0).to(device);
  at::Tensor embeds = model.model->embed_tokens(local_ids);  // [B, l, D]
  if (rows > 0 && local_video.any().item<bool>()) {
    at::Tensor local_rows = shard(video_row, 1, out.layout, rank, 0).to(device).masked_select(local_video);
    embeds =
        embeds.index_put({local_video}, video_embeds.to(embeds.scalar_type()).index_select(0, local_rows));
  } else if (rows > 0 && video_embeds.requires_grad()) {
    // A shard of text only still joins the video rows' graph: the backward of the sharded encoder
    // is a collective every SP rank must enter.
    embeds = embeds + video_embeds.sum().to(embeds.scalar_type()) * 0;
  }
  out.embeds = embeds * real.unsqueeze(-1).to(embeds.scalar_type());
  out.positions = shard(positions, 2, out.layout, rank, 1).to(device);
  out.targets = shard(targets, 1, out.layout, rank, 0).to(device);
  out.loss_mask = shard(scored, 1, out.layout, rank, 0).to(device);
  return out;
}

at::Tensor sharded_token_logprobs(model::QwenVLImpl& model, const ShardedSequence& shard,
                                  const std::shared_ptr<SequenceParallelAttention>& attention,
                                  const model::LogprobOptions& options, at::Tensor* entropy) {
  attention->set_layout(shard.layout);
  model.set_text_attention(attention);
  at::Tensor hidden = model.model->forward(shard.embeds, shard.positions);  // [B, l, D]
  const int64_t batch = hidden.size(0), local = hidden.size(1);
  at::Tensor picked = shard.loss_mask.reshape(-1).nonzero().squeeze(1);
  const at::Tensor rows = hidden.reshape({batch * local, -1}).index_select(0, picked);  // [N, D]
  at::Tensor logprobs = model::token_logprobs(rows, model.lm_head_weight(),
                                              shard.targets.reshape(-1).index_select(0, picked), options);
  // [N] values back to their [B, l] positions, 0 elsewhere.
  auto scatter = [&](const at::Tensor& values) {
    return at::zeros({batch * local}, values.options()).index_put({picked}, values).reshape({batch, local});
  };
  if (entropy != nullptr) *entropy = scatter(model::token_entropy(rows, model.lm_head_weight(), options));
  return scatter(logprobs);
}

at::Tensor gather_sequence(const at::Tensor& local, const SequenceLayout& layout, const Mesh& mesh) {
  at::NoGradGuard no_grad;
  at::Tensor gathered = all_gather_cat(mesh.sp(), local.detach().contiguous(), 1);  // [B, P·l]
  std::vector<at::Tensor> parts = gathered.split(layout.local_length(), 1);
  return unshard(parts, 1, layout);
}

void all_reduce_gradients(torch::nn::Module& module, const Mesh& mesh) {
  // Every rank reduces every parameter in the same order; a rank whose tokens never reached a
  // parameter contributes zeros (skipping it would leave the collectives mismatched).
  for (auto& param : module.parameters()) {
    if (!param.requires_grad()) continue;
    if (!param.grad().defined()) param.mutable_grad() = at::zeros_like(param);
    all_reduce_sum(mesh.sp(), param.mutable_grad());
  }
}

}  // namespace lvrl::sp
