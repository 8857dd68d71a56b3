// A dataset row's video as the language model's input rows: from the embedding cache, or decoded,
// encoded and stored when the cache lacks them. The one call rollout workers, the trainer (encode on
// a miss) and evaluation use to get a video's rows; `lvrl preprocess` fills the same entries ahead of
// time.
//
// Why it is built this way:
//  - The same pieces as preprocess (video_entry.h): the content key from the video's bytes, the
//    recipe and the encoder's fingerprint; the metadata written beside the rows and read back on a
//    hit. An entry preprocess stored is a hit here, and an entry stored here is one preprocess skips.
//  - A hit decodes nothing: the grid, the frames' real timestamps and second_per_grid_t come from
//    the entry's metadata, checked against its rows (read_video_entry).
//  - A miss runs what preprocess runs for one video — prepare_video, the vision tower, a put — and
//    returns the rows it computed (the put's result does not matter: two processes missing the same
//    key at once both encode, the first put wins, and both entries would be the same rows).
//  - The bytes are hashed on every call (xxh3: about a second per GB from the page cache). Keeping
//    hashes by path and modification time would save that, but a file replaced in place would then
//    name the old video's rows; a content address is only as good as the bytes it was taken from.
//  - A video with damaged spans is handled as recipe.on_damage says, exactly as preprocess handles
//    it (the policy is part of the key): stand-in frames with a warning, or an InputError naming the
//    file and span under `error`. Rows preprocess would not store never reach a prompt another way.
//
// Several ranks (mesh with sp_size() > 1): a collective over mesh.sp(). Every rank of an SP group
// calls get_or_encode with the same sample and recipe and an encoder of the same weights (checked
// once with agree_on_setup, sharded_encoder.h); DP groups call it independently, each with its own
// sample. The group's rank 0 (sp_rank 0, the leader) alone hashes the video, reads the cache,
// decodes and writes, as preprocess's rank 0 does (sharded_encoder.h says why: what to encode is
// decided in one place, and only the leader needs the cache and the video files). A hit is
// broadcast rather than read by every rank: one read from the cache server instead of P, and no
// rank can miss an entry evicted after another rank read it. Per call, on every rank of the group,
// in this order (CPU tensors over Gloo, like sharded_encoder's):
//     broadcast  header [kind, t, h, w, rows, columns, frames, dtype, text bytes] int64
//     broadcast  text: the key, or the leader's error (kind failed / bad input: every rank throws,
//                the leader its own exception, the others an Error naming the video, or an
//                InputError with the leader's text for bad input)
//     broadcast  frame timestamps [frames] then second_per_grid_t, float64
//     hit:       broadcast the entry's rows [t·h·w/4, columns] (as bytes: any dtype crosses Gloo)
//     miss:      broadcast pixel rows [t·h·w, columns] float32, then encode_together
//                (sharded_encoder.h: each rank's run of temporal slices, the failure flags, the
//                all-gather of the rows), then the leader puts and broadcasts its put status [1] int64
// so every rank returns the same VideoRows, or throws together and is ready for the next call. The
// rows are those of one rank's encode (attention never crosses temporal slices), so the key does
// not name the rank count, as in preprocess. The mesh must be a CPU (Gloo) mesh: a GPU trainer
// makes one beside its NCCL mesh for this.
#pragma once

#include <ATen/Tensor.h>

#include <string>
#include <vector>

#include "cache/embedding_cache.h"
#include "core/dataset.h"
#include "model/rope.h"
#include "pipeline/video_recipe.h"
#include "pipeline/vision_encoder.h"

namespace lvrl::sp {
class Mesh;
}

namespace lvrl::pipeline {

struct VideoRows {
  at::Tensor rows;            // [t·h·w / merge², out_hidden_size] CPU, contiguous, the encoder's dtype
  model::GridTHW grid_thw{};  // (t, h, w) patches
  std::vector<double>
      frame_timestamps;          // [frames] real pts of the sampled frames, seconds from the first frame
  double second_per_grid_t = 0;  // temporal_patch_size / sample fps: ModelInput::second_per_grid_ts
  std::string key;               // the entry's content key (video_embedding_key)
  bool hit = false;              // the rows came from the cache
};

// sample.video (an absolute path, as DatasetReader resolves it) → its rows under `recipe` (whose
// `vision` must be the encoder's patch layout: vision_params()). A missing, unreadable or too
// short video, or one damaged under on_damage=error: an InputError naming the file. A cache server that
// fails: the cache's error. mesh: null or of one SP rank: this process alone. Otherwise collective over
// mesh.sp() (above); only the leader's `cache` is used.
VideoRows get_or_encode(const data::Sample& sample, const VideoRecipe& recipe, VisionEncoder& encoder,
                        cache::EmbeddingCache& cache, const sp::Mesh* mesh = nullptr);

}  // namespace lvrl::pipeline
