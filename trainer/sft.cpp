#include "trainer/sft.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "cache/redis_config.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "pipeline/preprocess.h"
#include "pipeline/video_rows.h"
#include "pipeline/vision_encoder.h"
#include "sp/comm.h"
#include "trainer/data_order.h"
#include "trainer/metric_names.h"
#include "trainer/optimizer.h"
#include "trainer/policy_gradient.h"
#include "trainer/policy_model.h"
#include "trainer/step_flops.h"
#include "trainer/training_run.h"

namespace lvrl::trainer {

TrainSequence sft_sequence(const model::Tokenizer& tokenizer, const data::Sample& sample,
                           const model::GridTHW& grid, const model::PromptOptions& prompt, int64_t merge_size,
                           const std::string& dataset_path) {
  if (sample.answer.empty()) {
    throw InputError({dataset_path, sample.line, "answer", ""},
                     fmt::format("row {} has no answer to train on", sample.id));
  }
  if (prompt.format == model::AnswerFormat::ThinkAnswer && sample.reasoning.empty()) {
    throw InputError({dataset_path, sample.line, "reasoning", ""},
                     fmt::format("row {} has no reasoning; prompt.answer_format asks for <think> reasoning "
                                 "(set it to answer to train on answers alone)",
                                 sample.id));
  }
  model::PromptRequest request;
  request.question = sample.question;
  request.options = sample.options;
  request.grid_thw = grid;
  const model::VideoPrompt rendered = model::render_prompt(tokenizer, request, prompt, merge_size);
  const std::vector<model::TokenId> target = model::encode_assistant_turn(
      tokenizer, model::format_answer(sample.reasoning, sample.answer, prompt.format));
  TrainSequence sequence;
  sequence.ids.assign(rendered.ids.begin(), rendered.ids.end());
  sequence.response_start = sequence.length();
  sequence.ids.insert(sequence.ids.end(), target.begin(), target.end());
  sequence.old_logprobs.assign(target.size(), 0.0F);  // unused by the cross-entropy
  sequence.sampled_logprobs.assign(target.size(), 0.0F);
  return sequence;
}

SftSummary run_sft(const Config& config, const std::shared_ptr<sp::Mesh>& mesh) {
  const std::string dataset_path = config.get<std::string>("data.path");
  if (dataset_path.empty()) {
    throw InputError({config.source_of("data.path"), 0, "data.path", ""}, "SFT needs a dataset (JSONL)");
  }
  std::vector<data::Sample> dataset =
      data::read_dataset(dataset_path, config.get<std::string>("data.video_dir"));
  const int64_t max_samples = config.get<int64_t>("data.max_samples");
  if (max_samples > 0 && static_cast<int64_t>(dataset.size()) > max_samples) dataset.resize(max_samples);
  if (dataset.empty())
    throw InputError({dataset_path, 0, "data.path", dataset_path}, "the dataset has no rows");
  const auto dataset_size = static_cast<int64_t>(dataset.size());
  const int64_t batch_size = config.get<int64_t>("trainer.rollout_batch");

  PolicyModel policy = load_policy(config);
  const model::Tokenizer tokenizer = model::Tokenizer::load(config.get<std::string>("model.path"));
  const model::PromptOptions prompt = model::PromptOptions::from_config(config);
  const int64_t merge = policy.model->config().vision.spatial_merge_size;

  // The cache: several ranks share the configured server; one process may start its own.
  std::optional<cache::RunRedis> redis;
  if (mesh->world_size() > 1 && !cache::configured_endpoint(config, "redis.cache_url")) {
    throw InputError({config.source_of("redis.cache_url"), 0, "redis.cache_url", ""},
                     "several trainer ranks share one embedding cache: point them at a running server");
  }
  redis.emplace(config, cache::RunRedis::Cache);
  cache::EmbeddingCache cache(redis->cache(), cache::cache_options_from(config),
                              cache::redis_options_from(config));
  pipeline::VisionEncoder encoder = pipeline::load_vision_encoder(config);
  pipeline::VideoRecipe recipe = pipeline::video_recipe_from(config);
  recipe.vision = encoder.vision_params();
  recipe.check();
  const sp::Mesh* video_mesh = mesh->sp_size() > 1 ? mesh.get() : nullptr;

  const int64_t steps = total_steps(config, dataset_size, batch_size);
  OptimizerOptions optimizer_options = OptimizerOptions::from_config(config);
  optimizer_options.steps = steps;
  optimizer_options.check();
  const std::vector<at::Tensor> trained_tensors = policy.trained_tensors();
  AdamW optimizer(policy.trained, optimizer_options);
  TrainingRun run(config, *policy.model, optimizer, mesh, "sft");
  run.set_total_steps(steps);
  GradientOptions gradient = GradientOptions::from_config(config);
  const TokenLoss cross_entropy = [](const TokenBatch& tokens) { return -tokens.logprobs; };

  SftSummary summary;
  TrainerState& state = run.state();
  while (state.step < steps) {
    if (run.stop_requested()) {
      summary.stopped = true;
      break;
    }
    const auto step_start = SteadyClock::now();
    state.data = cursor_to_read_from(state.data, dataset_size, run.resumed_from().value_or(dataset_path));
    const std::vector<int64_t> items = take_items(state.data, dataset_size, batch_size);
    // This DP rank's rows, each with its video rows (a collective over the SP group).
    TrainBatch local;
    int64_t hits = 0, videos = 0;
    for (size_t i = static_cast<size_t>(mesh->dp_rank()); i < items.size(); i += mesh->dp_size()) {
      const data::Sample& sample = dataset[items[i]];
      const pipeline::VideoRows rows = pipeline::get_or_encode(sample, recipe, encoder, cache, video_mesh);
      hits += rows.hit ? 1 : 0;
      ++videos;
      TrainSequence sequence = sft_sequence(tokenizer, sample, rows.grid_thw, prompt, merge, dataset_path);
      sequence.video = static_cast<int64_t>(local.videos.size());
      local.videos.push_back({rows.rows, rows.grid_thw, rows.second_per_grid_t});
      local.sequences.push_back(std::move(sequence));
    }
    const double video_s = seconds_since(step_start);

    const auto update_start = SteadyClock::now();
    optimizer.zero_grad();
    const GradientResult result = accumulate_gradients(*policy.model, local, mesh, gradient, cross_entropy);
    const double forward_backward_s = seconds_since(update_start);
    const auto optimizer_start = SteadyClock::now();
    const double grad_norm = clip_grad_norm(trained_tensors, optimizer_options.grad_clip, nullptr);
    run.check_finite(result.loss, grad_norm);
    const double lr = optimizer.step();
    const double optimizer_s = seconds_since(optimizer_start);

    // Cache hits and videos over the DP groups; the model FLOPs of every DP group's share.
    at::Tensor cache_counts = at::tensor({static_cast<double>(hits), static_cast<double>(videos),
                                          step_flops(policy.model->config().text, local).total()},
                                         at::kDouble);
    sp::all_reduce_sum(mesh->dp(), cache_counts);
    const double step_s = seconds_since(step_start);
    std::map<std::string, double> scalars = {
        {metric::kSftLoss, result.loss},
        {metric::kSftTokens, static_cast<double>(result.tokens)},
        {metric::kGradNorm, grad_norm},
        {metric::kLearningRate, lr},
        {metric::kTimingVideo, video_s},
        {metric::kForwardBackward, forward_backward_s},
        {metric::kOptimizer, optimizer_s},
        {metric::kTimePerStep, step_s},
        {metric::kTokensPerSecond, static_cast<double>(result.tokens) / std::max(step_s, 1e-9)},
        {metric::kPeakHostMemoryGb, peak_host_memory_gb()},
        {metric::kAchievedFlops, cache_counts[2].item<double>() / std::max(forward_backward_s, 1e-9)},
        {metric::kCacheHitRate,
         cache_counts[0].item<double>() / std::max(1.0, cache_counts[1].item<double>())}};
    run.complete_step(scalars);
    summary.last_loss = result.loss;
    ++summary.steps;
  }
  run.finish();
  summary.final_step = state.step;
  return summary;
}

}  // namespace lvrl::trainer
