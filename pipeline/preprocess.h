// `lvrl preprocess`: a video QA dataset → an embedding cache. For every distinct video the dataset
// names, the key is a content address (cache/content_key.h: the video's bytes, the sampling and
// preprocessing recipe, the encoder's weights); a key the cache already holds is skipped, any other
// video is decoded, patchified, encoded by the vision tower and stored.
//
// Why it is built this way:
//  - Resumable after a kill: a put commits its manifest last (cache/embedding_cache.h), so an entry
//    is either complete or absent, and a rerun skips exactly the complete ones. Nothing else records
//    progress, so there is nothing to get out of step with the cache.
//  - Decoding and encoding overlap: `decode_threads` workers hash, check the cache, sample and
//    patchify the next videos (one decoder thread each: parallelism across videos beats threads
//    inside one decoder) while the calling thread runs the encoder. At most `decode_ahead` prepared
//    videos wait, so memory stays bounded on hour-long videos.
//  - A missing, unreadable or too-short video is reported with its reason and skipped, never replaced
//    by another video or by blank frames (what Long-RL's loader does). Frames that do not decode are
//    handled as video.on_damage says (previous, nearest, or error: the video fails naming the span;
//    drop is refused, the frame count is the recipe's), and the manifest marks each stand-in.
//  - Several records naming one video (many questions per video) cost one encode. So do two files
//    with identical bytes: the second finds the first one's key.
//  - Launched as several ranks (`lvrl sp launch --nproc P -- lvrl preprocess ...`), every rank
//    encodes every video: rank 0 runs everything above and sends each video's patch rows to the
//    others; each rank encodes a contiguous run of its temporal slices (MR-SP stage 1) and rank 0
//    stores the gathered rows (pipeline/sharded_encoder.h). The embeddings, hence the keys, are those
//    of a single-rank run; the progress line and summary come from rank 0 alone.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "cache/embedding_cache.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/progress.h"
#include "pipeline/video_entry.h"
#include "pipeline/video_recipe.h"
#include "pipeline/vision_encoder.h"

namespace lvrl::sp {
class Mesh;
}

namespace lvrl::pipeline {

struct PreprocessOptions {
  std::string dataset;      // JSONL (data.path)
  std::string video_dir;    // data.video_dir
  int64_t max_records = 0;  // 0 = all (data.max_samples)
  VideoRecipe recipe;       // recipe.vision is overwritten with the encoder's patch layout
  int decode_threads = 2;   // videos decoded at once
  int decode_ahead = 2;     // prepared videos waiting for the encoder, at most
  ProgressOptions progress;
};

// The video recipe of preprocess.* and video.on_damage (recipe.vision left for the encoder to set);
// values that disagree are an InputError naming the key and where its value came from.
VideoRecipe video_recipe_from(const Config& config);
// preprocess.* and data.*: InputErrors name the key (and the config file or override it came from).
PreprocessOptions preprocess_options_from(const Config& config);

enum class VideoOutcome {
  Cached,   // encoded and stored by this run (or stored by a concurrent writer of the same key)
  Skipped,  // already in the cache, or the same bytes as an earlier video of this run
  Failed,   // missing, unreadable, too short, or damaged under video.on_damage=error: see reason
};
const char* outcome_name(VideoOutcome outcome);

struct VideoReport {
  std::string video;                    // absolute path
  std::vector<std::string> record_ids;  // the records that name it, in file order
  VideoOutcome outcome = VideoOutcome::Failed;
  std::string key;     // "" when the video could not be read
  std::string reason;  // Failed: why; Skipped: "already cached" or "same bytes as ..."
  int64_t tokens = 0;  // embedding rows stored (Cached)
  double prepare_s = 0, encode_s = 0, put_s = 0;
};

struct PreprocessSummary {
  int64_t records = 0, videos = 0, cached = 0, skipped = 0, failed = 0;
  int64_t tokens = 0;
  double seconds = 0;
  double prepare_s = 0, encode_s = 0, put_s = 0;  // summed over videos (prepare runs in parallel)
  std::string encoder_fingerprint, ns;
  std::vector<VideoReport> reports;  // one per distinct video, in dataset order

  bool complete() const { return failed == 0; }  // every video cached or skipped
  // "preprocess: 7 records, 6 videos in 3.2 s (1.9 videos/s): 3 cached, 0 skipped, 3 failed" and one
  // line per failure with its reason.
  std::string text() const;
  nlohmann::json to_json() const;  // the same, for machines (one line when dumped)
};

// Runs the whole dataset. Per-video problems end up in the summary; a cache server that cannot be
// reached, or a dataset that cannot be read, throws.
// mesh: null, or of one rank: this process encodes alone. Of several ranks: this is rank 0, and
// every other rank is in serve_sharded_encoder (pipeline/sharded_encoder.h) until this returns or throws.
PreprocessSummary run_preprocess(const PreprocessOptions& options, VisionEncoder& encoder,
                                 cache::EmbeddingCache& cache, const sp::Mesh* mesh = nullptr);

}  // namespace lvrl::pipeline
