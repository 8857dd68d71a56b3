// Trainer checkpoints in the run directory (docs/trainer.md#run-directory-and-checkpoints):
//
//   RUN/checkpoints/step-<N>/
//     config.json, model.safetensors (or shards + index)   HF layout: `lvrl model info` and
//                                                          transformers read it as a model
//     tokenizer.json, preprocessor_config.json, ...        copied from model.path when present
//     trainer_state/state.json                             step, schedule, data cursor, ids, metrics
//     trainer_state/optimizer.safetensors                  the optimizer's tensors by name
//     trainer_state/config.yaml                            the resolved config
//     manifest.json                                        every other file's size and XXH3-128,
//                                                          written last
//
// A save builds the directory as RUN/checkpoints/.step-<N>.tmp-<pid>, fsyncs every file and the
// directories, and renames it into place: a crash at any moment leaves the earlier checkpoints
// whole and at most a temp dir, which the next save removes. A checkpoint counts only when its
// manifest is there and every file it lists has its size and hash; resume skips the others.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/qwen_vl.h"
#include "trainer/trainer_state.h"

namespace lvrl::trainer {

inline constexpr const char* kCheckpointsDirName = "checkpoints";
inline constexpr const char* kManifestFileName = "manifest.json";
inline constexpr const char* kTrainerStateDirName = "trainer_state";

// The files of model.path a checkpoint carries along, when present: what loading it as a model
// (tokenizing, preprocessing video, generating) needs besides the weights.
const std::vector<std::string>& model_side_files();

// RUN/checkpoints/step-<step>.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

// Writes the checkpoint of `state.step` (the weights in the model's own dtype, bit for bit), then
// removes all but the newest `keep` checkpoints (by step; the one just written always stays) and
// any temp dir an interrupted save left. A checkpoint of the same step already there is replaced.
// `model_source_dir` is model.path, where the tokenizer and preprocessor files come from ("" =
// none). Returns the checkpoint's directory.
std::string save_checkpoint(const std::string& run_dir, const model::QwenVLImpl& model,
                            const TrainerState& state, const std::string& model_source_dir, int64_t keep);

// The step-<N> directories under RUN/checkpoints, oldest first, valid or not (temp dirs excluded).
std::vector<std::string> list_checkpoints(const std::string& run_dir);

// Checks the manifest and every file it lists (present, size, XXH3-128), and that the files a
// checkpoint needs are among them. An InputError naming the offending file otherwise.
void validate_checkpoint(const std::string& dir);

// trainer.resume: "never" → none; "auto" → the newest valid checkpoint of RUN/checkpoints (none
// when there is none), each invalid newer one skipped with a warning naming it and why; any other
// value is a checkpoint directory, which must be valid (an InputError naming it, key trainer.resume).
std::optional<std::string> find_resume_checkpoint(const std::string& run_dir, const std::string& resume);

// Reads a checkpoint (validated beforehand: find_resume_checkpoint does) into `model` (converted
// to its dtype) and `state`. The optimizer tensors are CPU views of the file's mapping
// (copy-on-write): the optimizer copies them where it keeps its moments.
void load_checkpoint(const std::string& dir, model::QwenVLImpl& model, TrainerState& state);

}  // namespace lvrl::trainer
