// How one video's embedding rows sit in the embedding cache: the key they are stored under and the
// metadata stored beside them. `lvrl preprocess` writes entries and get_or_encode (video_rows.h)
// writes and reads them, both through these functions, so an entry either of them wrote serves the
// other.
//
// Why it is built this way:
//  - The key is a content address (cache/content_key.h): the video's bytes, the recipe's two
//    descriptions and the encoder's fingerprint. One derivation, here, or a job computing it its own
//    way would miss every entry another job stored.
//  - A hit must give what a prompt needs besides the rows without decoding the video again: the
//    patch grid (how many <|video_pad|> tokens, M-RoPE's t/h/w), second_per_grid_t (M-RoPE's time
//    scale) and the frames' real timestamps. The metadata carries them; read_video_entry (and
//    get_or_encode, for the rows) checks them, so an entry that disagrees with itself is an error
//    naming the key and field rather than a prompt with the wrong number of video tokens.
#pragma once

#include <string>
#include <vector>

#include "cache/cache_manifest.h"
#include "core/hash.h"
#include "model/rope.h"
#include "pipeline/video_recipe.h"

namespace lvrl::pipeline {

// The cache key of one video (video_hash = hash_file of it) under a recipe and an encoder.
std::string video_embedding_key(const Hash128& video_hash, const VideoRecipe& recipe,
                                const std::string& fingerprint);

// What is stored beside a video's rows: grid_thw, the sampled frames' real timestamps, the encoder
// fingerprint, and in `extra` the producer, the video's path and xxh128, both recipe descriptions,
// frame counts and rates, second_per_grid_t and the frame size.
cache::EmbeddingMetadata video_entry_metadata(const std::string& producer, const std::string& video_path,
                                              const Hash128& video_hash, const PreparedVideo& video,
                                              const VideoRecipe& recipe, const std::string& fingerprint);

// What a prompt needs of a cached video besides its rows.
struct VideoEntryFacts {
  model::GridTHW grid_thw{};             // (t, h, w) patches; rows = t·h·w / merge²
  std::vector<double> frame_timestamps;  // [frames] real pts of the sampled frames, seconds
  double second_per_grid_t = 0;          // temporal_patch_size / sample fps
};

// The facts of a cached entry's metadata, checked against each other: a grid of three positive
// numbers, ⌈frames / temporal_patch_size⌉ = t, a positive second_per_grid_t. Anything else is an
// Error naming the key and the field. (The rows against the grid and the encoder: video_rows.cpp.)
VideoEntryFacts read_video_entry(const std::string& key, const cache::EmbeddingMetadata& metadata,
                                 const video::QwenVisionParams& vision);

}  // namespace lvrl::pipeline
