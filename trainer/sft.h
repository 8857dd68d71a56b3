// Supervised fine-tuning (docs/trainer.md#sft): cross-entropy on the assistant turn — the reasoning
// and the answer in the prompt's answer format, then <|im_end|> — of a JSONL whose rows carry
// `reasoning` and `answer`, with the RL trainer's machinery: the one prompt renderer, video rows
// from the embedding cache (encoded and stored on a miss), SP forward and backward over DP × SP
// ranks, AdamW and its schedule, and TrainingRun's checkpoints, resume, metrics and stop.
//
// A step takes the next trainer.rollout_batch rows of the epoch's order (data_order.h; the last
// step of an epoch may take fewer); the run lasts trainer.steps steps, or trainer.epochs passes when
// trainer.steps is 0. Each DP rank trains rows dp_rank, dp_rank + dp_size, … of the step; the loss is
// the mean over every target token of the step (the token counts are all-reduced first), so any
// layout trains the same model.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/dataset.h"
#include "model/chat_template.h"
#include "model/rope.h"
#include "model/tokenizer.h"
#include "sp/mesh.h"
#include "trainer/train_batch.h"

namespace lvrl::trainer {

// One row's training sequence: the rendered prompt for a video of `grid`, then the target answer
// (format_answer(reasoning, answer) and the turn's end). Without a reasoning under the think-answer
// format, an InputError names the row's line and the field.
TrainSequence sft_sequence(const model::Tokenizer& tokenizer, const data::Sample& sample,
                           const model::GridTHW& grid, const model::PromptOptions& prompt, int64_t merge_size,
                           const std::string& dataset_path);

struct SftSummary {
  int64_t steps = 0;       // optimizer steps this process ran (after any resume)
  int64_t final_step = 0;  // the run's step at the end
  double last_loss = 0;
  bool stopped = false;  // by SIGTERM / SIGINT
};

// The whole job on this rank (every rank of `mesh` calls it): config's model.*, data.*, trainer.*,
// run.*, sp.*, prompt.*, preprocess.* and redis.* keys.
SftSummary run_sft(const Config& config, const std::shared_ptr<sp::Mesh>& mesh);

}  // namespace lvrl::trainer
