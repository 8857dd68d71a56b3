// What a trainer must carry across a restart besides the weights
// (docs/trainer.md#run-directory-and-checkpoints): the step, the schedule's position, where the data cursor
// stands, the rollouts trained on but not yet acknowledged, the metrics so far, the resolved config and the
// optimizer's tensors.
//
// Everything is keyed by name, nothing by rank: a checkpoint written by one DP/SP layout resumes
// on another. No random generator state is stored either; random streams are derived from
// (seed, step, rank) by derive_seed (trainer/seed.h), so the step alone says where they stand.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lvrl::trainer {

// Where the next dataset item comes from: item `position` of epoch `epoch`'s order, which is the
// dataset shuffled with `shuffle_seed`.
struct DataCursor {
  int64_t epoch = 0;
  int64_t position = 0;  // items of this epoch already consumed, 0..dataset size
  uint64_t shuffle_seed = 0;

  bool operator==(const DataCursor& other) const {
    return epoch == other.epoch && position == other.position && shuffle_seed == other.shuffle_seed;
  }
};

// The cursor to read from next: one standing at the end of an epoch (position == dataset_size, as
// saved right after its last batch) moves to position 0 of the next epoch, so a resume there runs
// the next epoch instead of finding nothing left in the finished one. A position past the dataset
// (the dataset shrank since the save) is an InputError naming `source` (the checkpoint).
DataCursor cursor_to_read_from(const DataCursor& cursor, int64_t dataset_size, const std::string& source);

// Items a run of `epochs` passes over `dataset_size` items has left to read from `cursor`.
int64_t items_remaining(const DataCursor& cursor, int64_t dataset_size, int64_t epochs);

struct TrainerState {
  int64_t step = 0;               // optimizer steps taken
  int64_t schedule_position = 0;  // steps the learning-rate schedule has advanced
  DataCursor data;
  // Rollout (or group) ids trained on since the last acknowledgement to the rollout side: after a
  // crash they are acknowledged on resume instead of being trained on twice.
  std::vector<std::string> unacknowledged_ids;
  nlohmann::json metrics = nlohmann::json::object();  // the metrics so far, as the trainer keeps them
  std::string config_yaml;                            // the resolved config the run was started with
  // The optimizer's tensors by parameter name, e.g. "exp_avg/<param>" and "exp_avg_sq/<param>"
  // (the optimizer defines the names; any dtype safetensors stores).
  std::map<std::string, at::Tensor> optimizer;
};

// state.json's object: everything but config_yaml and the optimizer tensors.
nlohmann::json state_to_json(const TrainerState& state);
// The inverse; a missing or mistyped field is an InputError naming `source` and the field.
void state_from_json(const nlohmann::json& json, const std::string& source, TrainerState& state);

}  // namespace lvrl::trainer
