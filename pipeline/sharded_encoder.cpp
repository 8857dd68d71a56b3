#include "pipeline/sharded_encoder.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <exception>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "sp/comm.h"
#include "sp/mesh.h"
#include "sp/vlm_shard.h"

namespace lvrl::pipeline {
namespace {

constexpr int kRoot = 0;
constexpr int64_t kFingerprintChars = 32;

// Header kinds.
constexpr int64_t kStop = 0;
constexpr int64_t kEncode = 1;
constexpr int64_t kHeaderSize = 5;  // kind, t, h, w, patch_dim

// Set-up statuses (agree_on_setup).
constexpr int64_t kReady = 0;
constexpr int64_t kFailed = 1;
constexpr int64_t kBadInput = 2;  // an InputError: exit status 2 on every rank

at::Tensor cpu_longs(int64_t size) {
  return at::zeros({size}, at::TensorOptions().dtype(at::kLong));
}

}  // namespace

at::Tensor encode_together(VisionEncoder& encoder, const sp::Mesh& mesh, const at::Tensor& pixels,
                           const model::GridTHW& grid) {
  at::NoGradGuard no_grad;
  model::VisionTowerImpl& tower = encoder.tower();
  const sp::VideoShard shard =
      sp::shard_video({grid}, tower.config().merge_units(), mesh.sp_size(), mesh.sp_rank(), pixels.size(0));
  at::Tensor local;
  bool threw = false;
  std::string own_error;
  std::exception_ptr fatal;  // no memory or a bug: rethrown once the other ranks know this one failed
  const auto failed_here = [&](const std::string& what) {
    threw = true;
    own_error = what;
    LVRL_WARN("the vision encoder failed on this rank's {} slices: {}",
              shard.grids.empty() ? 0 : shard.grids[0][0], own_error);
  };
  try {
    local = sp::encode_video_shard(tower, pixels.to(encoder.device()), shard).to(at::kCPU).contiguous();
  } catch (const Error& e) {  // the tower's own checks
    failed_here(e.what());
  } catch (const c10::Error& e) {  // LibTorch's refusal of this video (e.g. CUDA out of memory)
    failed_here(e.what());
  } catch (...) {
    fatal = std::current_exception();
    failed_here("not this video's fault");
  }
  at::Tensor failed = cpu_longs(mesh.sp_size());  // [SP] 1 where a rank's encode threw
  failed[mesh.sp_rank()] = threw ? 1 : 0;
  sp::all_reduce_sum(mesh.sp(), failed);
  if (fatal) std::rethrow_exception(fatal);  // the others find this rank gone at the next collective
  std::vector<int> failed_ranks;             // global ranks (rank = dp_index · SP + sp_index)
  for (int r = 0; r < mesh.sp_size(); ++r) {
    if (failed[r].item<int64_t>() != 0) failed_ranks.push_back(mesh.dp_rank() * mesh.sp_size() + r);
  }
  if (!failed_ranks.empty()) {
    if (threw) throw Error(own_error);
    throw Error(fmt::format("on rank{} {} ({} log says why)", failed_ranks.size() == 1 ? "" : "s",
                            fmt::join(failed_ranks, ", "), failed_ranks.size() == 1 ? "its" : "each one's"));
  }
  return sp::gather_video_rows(local, shard, mesh);
}

void agree_on_setup(const sp::Mesh& mesh, const std::string& fingerprint, const std::exception_ptr& failure) {
  int64_t status = kReady;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const InputError&) {
      status = kBadInput;
    } catch (...) {
      status = kFailed;
    }
  }
  at::Tensor mine = cpu_longs(1 + kFingerprintChars);  // status, then the fingerprint's characters
  mine[0] = status;
  for (int64_t i = 0; i < kFingerprintChars && status == kReady; ++i) {
    mine[1 + i] = i < static_cast<int64_t>(fingerprint.size()) ? fingerprint[i] : 0;
  }
  at::Tensor all = sp::all_gather_cat(mesh.world(), mine.unsqueeze(0), 0);  // [P, 1 + 32]
  if (failure) std::rethrow_exception(failure);
  for (int r = 0; r < mesh.world_size(); ++r) {
    const int64_t theirs = all[r][0].item<int64_t>();
    if (theirs == kReady) continue;
    const std::string problem = "failed to set up (its log says why); every rank stops";
    if (theirs == kBadInput) throw InputError({"", 0, "rank", std::to_string(r)}, problem);
    throw Error(fmt::format("rank {} {}", r, problem));
  }
  for (int r = 0; r < mesh.world_size(); ++r) {
    std::string theirs;
    for (int64_t i = 0; i < kFingerprintChars; ++i)
      theirs += static_cast<char>(all[r][1 + i].item<int64_t>());
    if (theirs != fingerprint) {
      throw InputError(
          {"", 0, "model.path",
           fmt::format("encoder {} on rank {}, {} on rank {}", theirs, r, fingerprint, mesh.rank())},
          "the ranks loaded different vision towers: every rank must load the same checkpoint");
    }
  }
}

ShardedEncoder::ShardedEncoder(VisionEncoder& encoder, const sp::Mesh& mesh)
    : encoder_(encoder), mesh_(mesh) {
  LVRL_ASSERT(mesh.rank() == kRoot, "ShardedEncoder leads from rank 0; the other ranks serve");
  LVRL_ASSERT(mesh.device().is_cpu(), "the preprocess collectives carry CPU tensors (Gloo)");
  LVRL_ASSERT(mesh.sp_size() == mesh.world_size(), "every rank encodes every video: sp must be the world");
}

ShardedEncoder::~ShardedEncoder() {
  if (in_video_) return;  // a collective failed mid-video: another message would be read as its data
  try {
    stop();
  } catch (const std::exception& e) {
    LVRL_ERROR("preprocess: could not tell the other ranks to stop: {}", e.what());
  }
}

at::Tensor ShardedEncoder::encode(const video::PixelPatches& patches) {
  LVRL_ASSERT(!stopped_, "ShardedEncoder::encode after stop");
  const auto& grid = patches.grid_thw;
  at::Tensor pixels = patches.pixel_values.to(at::kCPU, at::kFloat).contiguous();  // [t·h·w, patch_dim]
  LVRL_ASSERT(pixels.dim() == 2 && pixels.size(0) == grid[0] * grid[1] * grid[2],
              fmt::format("pixel_values {} for grid {}", c10::str(pixels.sizes()), fmt::join(grid, "×")));
  in_video_ = true;
  at::Tensor header = at::tensor(std::vector<int64_t>{kEncode, grid[0], grid[1], grid[2], pixels.size(1)});
  sp::broadcast(mesh_.world(), header, kRoot);
  sp::broadcast(mesh_.world(), pixels, kRoot);
  at::Tensor rows;
  try {
    rows = encode_together(encoder_, mesh_, pixels, {grid[0], grid[1], grid[2]});
  } catch (const LibraryError&) {
    throw;  // a collective failed: the ranks are out of step (in_video_ stays set)
  } catch (...) {
    in_video_ = false;  // every rank agreed the video failed and is ready for the next
    throw;
  }
  in_video_ = false;
  return rows.contiguous();
}

void ShardedEncoder::stop() {
  if (stopped_) return;
  stopped_ = true;
  at::Tensor header = cpu_longs(kHeaderSize);
  header[0] = kStop;
  sp::broadcast(mesh_.world(), header, kRoot);
}

int64_t serve_sharded_encoder(VisionEncoder& encoder, const sp::Mesh& mesh) {
  LVRL_ASSERT(mesh.rank() != kRoot, "rank 0 leads (ShardedEncoder); the other ranks serve");
  LVRL_ASSERT(mesh.device().is_cpu(), "the preprocess collectives carry CPU tensors (Gloo)");
  LVRL_ASSERT(mesh.sp_size() == mesh.world_size(), "every rank encodes every video: sp must be the world");
  int64_t served = 0;
  for (;;) {
    at::Tensor header = cpu_longs(kHeaderSize);
    sp::broadcast(mesh.world(), header, kRoot);
    if (header[0].item<int64_t>() == kStop) return served;
    LVRL_ASSERT(header[0].item<int64_t>() == kEncode,
                fmt::format("unknown request {}", header[0].item<int64_t>()));
    const model::GridTHW grid{header[1].item<int64_t>(), header[2].item<int64_t>(),
                              header[3].item<int64_t>()};
    at::Tensor pixels = at::empty({grid[0] * grid[1] * grid[2], header[4].item<int64_t>()}, at::kFloat);
    sp::broadcast(mesh.world(), pixels, kRoot);
    try {
      encode_together(encoder, mesh, pixels, grid);  // rank 0 keeps the rows
    } catch (const LibraryError&) {
      throw;
    } catch (const Error&) {
      // every rank agreed this video failed (rank 0 reports it); on to the next
    }
    ++served;
  }
}

}  // namespace lvrl::pipeline
