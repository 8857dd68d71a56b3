// One video encoded by every rank: `lvrl preprocess` under `lvrl sp launch --nproc P` (or torchrun).
// Rank 0 leads (ShardedEncoder, inside run_preprocess); every other rank serves its requests
// (serve_sharded_encoder) until rank 0 says stop.
//
// Why it is built this way:
//  - Rank 0 alone decodes, checks the cache and writes; the other ranks only run the tower on the
//    patch rows rank 0 broadcasts. Decoding once keeps what to encode decided in one place: a video
//    rank 0 skips (cached, same bytes) or fails (missing, damaged, too short) never reaches the
//    other ranks, so there is nothing about it to agree on. Every rank decoding the video itself
//    would save the broadcast but decode it P times over on one machine's cores, need the video
//    files on every node, and a rank decoding differently (a file replaced mid-run) would mix two
//    videos into one entry unnoticed.
//  - Per video, every rank makes the same collectives in the same order (on CPU, over Mesh::world,
//    which is the SP group here: encode_together's all-reduce and gather run over Mesh::sp):
//      broadcast  header [kind, t, h, w, patch_dim] int64     kind stop: serving ends here
//      broadcast  pixel rows [t·h·w, patch_dim] float32
//      (local)    this rank's run of temporal slices through the tower (sp/vlm_shard.h)
//      all-reduce one flag per rank: whose encode threw
//      all-gather the rows, [t·h·w/4, D] on every rank       only when no rank's encode threw
//    so an encode that throws on any rank (out of memory on a long video) fails that video on every
//    rank together and the next video starts in step; no rank waits in a gather another skipped.
//  - Rank 0 sends stop when its run ends: normally, or by an exception between videos (dataset
//    unreadable, cache server gone). The other ranks then return 0 and the launcher reports rank 0's
//    status. A collective that fails mid-video cannot be resumed; that rank exits with the c10d
//    error and the launcher stops the rest (c10d's timeout, LVRL_DIST_TIMEOUT_S, bounds any wait).
//  - Collectives carry CPU tensors over Gloo whatever device the tower runs on: pixels are decoded
//    on the CPU and the cache stores from CPU memory, so NCCL would only add copies.
//  - The rows are the computation of one rank (attention never crosses temporal slices; only the
//    matmuls' row blocking differs, ≤ 1e-5 relative in float32), so the content key — which names
//    the encoder's weights, not the rank count — is the one a single-rank run uses, and a cache
//    filled either way serves both. That needs the same weights on every rank: agree_on_setup
//    compares the ranks' encoder fingerprints before the first video.
#pragma once

#include <ATen/Tensor.h>

#include <exception>
#include <string>

#include "model/rope.h"
#include "pipeline/vision_encoder.h"
#include "video/qwen_preprocess.h"

namespace lvrl::sp {
class Mesh;
}

namespace lvrl::pipeline {

// Collective over mesh.world(), once before the first video: each rank says whether its set-up
// (cache connection on rank 0, encoder load everywhere) succeeded, and with which encoder. When a
// rank failed, every rank throws: that rank its own exception, the others an error naming it (an
// InputError when the failing rank's was one, so every rank exits with the same status). Ranks
// whose encoder fingerprints differ: an InputError on every rank.
void agree_on_setup(const sp::Mesh& mesh, const std::string& fingerprint, const std::exception_ptr& failure);

// Rank 0's side. Not copyable; lives for one run_preprocess.
class ShardedEncoder {
 public:
  ShardedEncoder(VisionEncoder& encoder, const sp::Mesh& mesh);
  ~ShardedEncoder();  // stop(), unless a collective failed mid-video (then nothing can be said)
  ShardedEncoder(const ShardedEncoder&) = delete;
  ShardedEncoder& operator=(const ShardedEncoder&) = delete;

  // Collective: as VisionEncoder::encode ([t·h·w/4, out_hidden_size], CPU, contiguous, compute
  // dtype). An encode that threw on any rank throws here (naming the ranks) with every rank ready
  // for the next video.
  at::Tensor encode(const video::PixelPatches& patches);
  // Ends serve_sharded_encoder on the other ranks; later calls do nothing.
  void stop();
  // A collective failed mid-video (encode threw a c10d LibraryError): the ranks cannot go on, and
  // the error must end the run rather than fail one video.
  bool out_of_step() const { return in_video_; }

 private:
  VisionEncoder& encoder_;
  const sp::Mesh& mesh_;
  bool stopped_ = false;
  bool in_video_ = false;  // between the header broadcast and the gather
};

// Every rank but 0: encodes its slices of each video rank 0 sends, until rank 0 sends stop.
// Returns the number of videos served.
int64_t serve_sharded_encoder(VisionEncoder& encoder, const sp::Mesh& mesh);

// The step of one video that every rank makes above, after the header and pixel broadcasts; also
// get_or_encode's (video_rows.h). Collective over mesh.sp(): every SP rank passes the same pixels
// [t·h·w, patch_dim] float32 (CPU) and grid, runs its run of temporal slices (sp/vlm_shard.h), the
// ranks all-reduce one flag each (whose encode threw) and, when none did, all-gather the rows.
// Returns [t·h·w/4, D] (CPU, compute dtype) on every rank; when any rank's encode threw, throws
// Error on every rank (naming the ranks) with every rank ready for the next video. A rank whose
// failure is no video's fault (no memory, a bug) rethrows its own exception after telling the others.
at::Tensor encode_together(VisionEncoder& encoder, const sp::Mesh& mesh, const at::Tensor& pixels,
                           const model::GridTHW& grid);

}  // namespace lvrl::pipeline
