// After each optimizer step, trainer rank 0 hands the new policy to the rollout processes
// (docs/trainer.md#weight-publishing): the language model's weights (the frozen vision tower never
// changes, so it is never re-sent) as one safetensors file per version under RUN/weights/,
// written crash-safely, checksummed (xxh128 of the file) and announced on the queue server's weight
// channel (cache/weight_channel.h). Rollout processes load it with model::load_published_weights.
// The newest `keep` versions stay on disk (rollout.max_staleness + 2: a worker may still be loading
// an older allowed version).
#pragma once

#include <memory>
#include <string>

#include "cache/weight_channel.h"
#include "model/qwen_vl.h"

namespace lvrl::trainer {

class WeightPublisher {
 public:
  // channel: null writes the files without announcing them (a run without rollout processes).
  WeightPublisher(std::string weights_dir, std::shared_ptr<cache::WeightChannel> channel, int64_t keep);

  // Writes version `version` of `model`'s language weights and announces it; returns what was announced.
  // A version the channel already holds (a resumed run retraining lost steps) is neither written nor
  // announced again: the newest announcement is returned.
  cache::WeightVersion publish(const model::QwenVLImpl& model, int64_t version);

  std::string path_of(int64_t version) const;  // weights_dir/v<version>.safetensors

 private:
  void prune(int64_t newest) const;
  std::string dir_;
  std::shared_ptr<cache::WeightChannel> channel_;
  int64_t keep_;
};

}  // namespace lvrl::trainer
