#include "pipeline/video_rows.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <exception>
#include <optional>

#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "pipeline/sharded_encoder.h"
#include "pipeline/video_entry.h"
#include "sp/comm.h"
#include "sp/mesh.h"

namespace lvrl::pipeline {
namespace {

const char* const kProducer = "pipeline::get_or_encode";  // the cache metadata's producer
constexpr int kLeader = 0;                                // sp rank

// Header kinds (video_rows.h).
constexpr int64_t kHit = 1;
constexpr int64_t kMiss = 2;
constexpr int64_t kFailed = 3;
constexpr int64_t kBadInput = 4;  // the leader's error was an InputError: every rank throws one
// Header: kind, t, h, w, rows and columns of the tensor that follows, frames, dtype, text bytes.
constexpr int64_t kHeaderSize = 9;

// What the leader (or a process alone) learns before anything is encoded.
struct Found {
  std::string key;
  bool hit = false;
  at::Tensor rows;                    // a hit: the cached rows
  PreparedVideo video;                // a miss: the patches to encode
  cache::EmbeddingMetadata metadata;  // the hit's, or what a miss will store
  VideoEntryFacts facts;
};

// The encoder's rows [t·h·w / merge², out_hidden_size] in its dtype: anything else under this key is
// an entry that disagrees with its own content address.
void expect_encoder_rows(const std::string& key, const at::Tensor& rows, const VisionEncoder& encoder,
                         const VideoEntryFacts& facts) {
  const auto& grid = facts.grid_thw;
  const int64_t merge = encoder.config().spatial_merge_size * encoder.config().spatial_merge_size;
  const bool shape_ok = rows.dim() == 2 && rows.size(0) * merge == grid[0] * grid[1] * grid[2] &&
                        rows.size(1) == encoder.config().out_hidden_size;
  if (!shape_ok || rows.scalar_type() != encoder.dtype()) {
    throw Error(fmt::format(
        "cache entry {}: rows {} {} for grid ({}, {}, {}); encoder {} gives [t·h·w/{}, {}] {}", key,
        c10::str(rows.sizes()), c10::toString(rows.scalar_type()), grid[0], grid[1], grid[2],
        encoder.fingerprint(), merge, encoder.config().out_hidden_size, c10::toString(encoder.dtype())));
  }
}

// Hash, key, cache get; on a miss, prepare the patches and the metadata to store.
Found find(const std::string& video_path, const VideoRecipe& recipe, const VisionEncoder& encoder,
           cache::EmbeddingCache& cache) {
  Found found;
  const Hash128 video_hash = hash_file(video_path);  // a missing file: InputError naming it
  found.key = video_embedding_key(video_hash, recipe, encoder.fingerprint());
  if (std::optional<cache::CachedEmbedding> entry = cache.get(found.key)) {
    found.hit = true;
    found.rows = std::move(entry->tensor);
    found.metadata = std::move(entry->manifest.metadata);
    found.facts = read_video_entry(found.key, found.metadata, recipe.vision);
    expect_encoder_rows(found.key, found.rows, encoder, found.facts);
    return found;
  }
  found.video = prepare_video(video_path, recipe);  // damage handled as recipe.on_damage says
  warn_if_damaged(video_path, found.video, recipe);
  found.metadata =
      video_entry_metadata(kProducer, video_path, video_hash, found.video, recipe, encoder.fingerprint());
  found.facts = read_video_entry(found.key, found.metadata, recipe.vision);
  return found;
}

VideoRows rows_of(Found& found, at::Tensor rows) {
  VideoRows out;
  out.rows = std::move(rows);
  out.grid_thw = found.facts.grid_thw;
  out.frame_timestamps = std::move(found.facts.frame_timestamps);
  out.second_per_grid_t = found.facts.second_per_grid_t;
  out.key = std::move(found.key);
  out.hit = found.hit;
  return out;
}

VideoRows get_or_encode_alone(const std::string& video_path, const VideoRecipe& recipe,
                              VisionEncoder& encoder, cache::EmbeddingCache& cache) {
  Found found = find(video_path, recipe, encoder, cache);
  if (found.hit) return rows_of(found, found.rows);
  at::Tensor rows = encoder.encode(found.video.patches);
  cache.put(found.key, rows, found.metadata);
  return rows_of(found, rows);
}

// ---- Several ranks: the exchange of video_rows.h -------------------------------------------------

at::Tensor text_tensor(const std::string& text) {  // [1, bytes] uint8
  at::Tensor out = at::empty({1, static_cast<int64_t>(text.size())}, at::kByte);
  std::copy(text.begin(), text.end(), out.data_ptr<uint8_t>());
  return out;
}

std::string text_of(const at::Tensor& bytes) {
  const auto* data = bytes.data_ptr<uint8_t>();
  return std::string(data, data + bytes.numel());
}

// The leader's `tensor` [rows, columns] on every rank of the group (the others pass an undefined
// one). It travels as bytes, so any dtype the cache holds (bf16 too) crosses Gloo.
at::Tensor share(const sp::Mesh& mesh, const at::Tensor& tensor, int64_t rows, int64_t columns,
                 at::ScalarType dtype) {
  const int64_t row_bytes = columns * static_cast<int64_t>(c10::elementSize(dtype));
  at::Tensor bytes = mesh.sp_rank() == kLeader
                         ? tensor.contiguous().view(at::kByte).reshape({rows, row_bytes})
                         : at::empty({rows, row_bytes}, at::kByte);
  sp::broadcast(mesh.sp(), bytes, kLeader);
  return mesh.sp_rank() == kLeader ? tensor.contiguous() : bytes.view(dtype);
}

VideoRows get_or_encode_together(const std::string& video_path, const VideoRecipe& recipe,
                                 VisionEncoder& encoder, cache::EmbeddingCache& cache, const sp::Mesh& mesh) {
  const bool leader = mesh.sp_rank() == kLeader;
  Found found;
  std::exception_ptr failure;
  at::Tensor header = at::zeros({kHeaderSize}, at::kLong);
  at::Tensor payload;  // the leader's rows (hit) or pixel rows (miss)
  std::string text;    // the key, or the leader's error
  if (leader) {
    int64_t kind = kFailed;
    try {
      found = find(video_path, recipe, encoder, cache);
      kind = found.hit ? kHit : kMiss;
      payload =
          found.hit ? found.rows : found.video.patches.pixel_values.to(at::kCPU, at::kFloat).contiguous();
      text = found.key;
    } catch (const InputError& e) {
      failure = std::current_exception();
      kind = kBadInput;
      text = e.what();
    } catch (const std::exception& e) {  // the cache server, a broken entry: the other ranks hear of it
      failure = std::current_exception();
      text = e.what();
    }
    const auto& grid = found.facts.grid_thw;
    const int64_t frames = static_cast<int64_t>(found.facts.frame_timestamps.size());
    const std::vector<int64_t> values =
        failure ? std::vector<int64_t>{kind, 0, 0, 0, 0, 0, 0, 0, static_cast<int64_t>(text.size())}
                : std::vector<int64_t>{kind,
                                       grid[0],
                                       grid[1],
                                       grid[2],
                                       payload.size(0),
                                       payload.size(1),
                                       frames,
                                       static_cast<int64_t>(payload.scalar_type()),
                                       static_cast<int64_t>(text.size())};
    header = at::tensor(values, at::kLong);
  }
  sp::broadcast(mesh.sp(), header, kLeader);
  const int64_t kind = header[0].item<int64_t>();
  const model::GridTHW grid{header[1].item<int64_t>(), header[2].item<int64_t>(), header[3].item<int64_t>()};
  const int64_t rows = header[4].item<int64_t>(), columns = header[5].item<int64_t>();
  const int64_t frames = header[6].item<int64_t>();
  const auto dtype = static_cast<at::ScalarType>(header[7].item<int64_t>());
  text = text_of(
      share(mesh, leader ? text_tensor(text) : at::Tensor(), 1, header[8].item<int64_t>(), at::kByte));
  if (kind == kFailed || kind == kBadInput) {
    if (failure) std::rethrow_exception(failure);
    if (kind == kBadInput) throw InputError({"", 0, "", ""}, text);  // the leader's words, file included
    throw Error(fmt::format("{}: rank {} (the SP group's first) failed: {}", video_path,
                            mesh.dp_rank() * mesh.sp_size() + kLeader, text));
  }
  LVRL_ASSERT(kind == kHit || kind == kMiss, fmt::format("unknown get_or_encode header kind {}", kind));

  // Frame timestamps, then second_per_grid_t.
  at::Tensor times;
  if (leader) {
    std::vector<double> values = found.facts.frame_timestamps;
    values.push_back(found.facts.second_per_grid_t);
    times = at::tensor(values, at::kDouble);
  }
  times = share(mesh, times.defined() ? times.unsqueeze(0) : times, 1, frames + 1, at::kDouble).view({-1});
  VideoRows out;
  out.grid_thw = grid;
  out.frame_timestamps.assign(times.data_ptr<double>(), times.data_ptr<double>() + frames);
  out.second_per_grid_t = times[frames].item<double>();
  out.key = text;
  out.hit = kind == kHit;
  at::Tensor shared = share(mesh, payload, rows, columns, dtype);
  if (out.hit) {
    out.rows = shared;
    return out;
  }
  out.rows = encode_together(encoder, mesh, shared, grid);  // throws on every rank together

  // The leader stores, and says whether it could.
  at::Tensor stored = at::zeros({1}, at::kLong);
  if (leader) {
    try {
      cache.put(out.key, out.rows, found.metadata);
    } catch (...) {
      failure = std::current_exception();
      stored[0] = 1;
    }
  }
  sp::broadcast(mesh.sp(), stored, kLeader);
  if (failure) std::rethrow_exception(failure);
  if (stored[0].item<int64_t>() != 0) {
    throw Error(fmt::format("{}: rank {} (the SP group's first) could not store key {} (its log says why)",
                            video_path, mesh.dp_rank() * mesh.sp_size() + kLeader, out.key));
  }
  return out;
}

}  // namespace

VideoRows get_or_encode(const data::Sample& sample, const VideoRecipe& recipe, VisionEncoder& encoder,
                        cache::EmbeddingCache& cache, const sp::Mesh* mesh) {
  VideoRecipe used = recipe;
  used.vision = encoder.vision_params();  // as preprocess does: the key then matches its entries
  used.check();
  if (mesh == nullptr || mesh->sp_size() == 1) return get_or_encode_alone(sample.video, used, encoder, cache);
  LVRL_ASSERT(mesh->device().is_cpu(), "get_or_encode's collectives carry CPU tensors: pass a Gloo mesh");
  return get_or_encode_together(sample.video, used, encoder, cache, *mesh);
}

}  // namespace lvrl::pipeline
