// `lvrl generate`: G answers to one question about one video, one JSON line per answer on stdout:
//   {"text", "token_ids", "logprobs", "finish_reason", "seed"}
// `text` is the answer decoded without special tokens; `logprobs` are the full-softmax log-probs at
// the sampling temperature (what the trainer recomputes). The video comes from a file (decoded and
// encoded by the checkpoint's own vision tower, with the preprocess.* recipe) or from the embedding
// cache by key. Flags override the rollout.* keys of --config; the prompt is the one renderer's
// (prompt.* keys). A progress line on stderr while a long prompt prefills.
//
// --nproc P: the command runs itself as P sequence-parallel ranks (sp/rank_run.h): the prompt is
// prefilled with SP attention (rollout.sp_mode), its K/V stays sharded, and every decode step merges
// the ranks' partial attention. Rank 0 samples and alone prints. Each rank decodes the video file
// (or reads the cache entry) itself; the frames are encoded sharded over the ranks.
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cache/embedding_cache.h"
#include "cache/redis_url.h"
#include "core/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/chat_template.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "pipeline/preprocess.h"
#include "pipeline/video_entry.h"
#include "pipeline/video_recipe.h"
#include "pipeline/vision_encoder.h"
#include "rollout/engine.h"
#include "sp/mesh.h"
#include "sp/rank_run.h"
#include "sp/vlm_shard.h"

namespace lvrl::rollout {
namespace {

struct GenerateArgs {
  std::string model_dir, config_path, video, embedding_key, cache_url, question;
  std::vector<std::string> options;
  std::optional<int64_t> n, top_k, max_new_tokens;
  std::optional<double> temperature, top_p;
  std::optional<uint64_t> seed;
  int nproc = 1;
};

// The flags as config overrides, so they meet the same checks as the YAML keys.
std::vector<std::string> overrides_of(const GenerateArgs& args) {
  std::vector<std::string> out = {"model.path=" + args.model_dir};
  if (args.n) out.push_back(fmt::format("rollout.n={}", *args.n));
  if (args.temperature) out.push_back(fmt::format("rollout.temperature={}", *args.temperature));
  if (args.top_p) out.push_back(fmt::format("rollout.top_p={}", *args.top_p));
  if (args.top_k) out.push_back(fmt::format("rollout.top_k={}", *args.top_k));
  if (args.max_new_tokens) out.push_back(fmt::format("rollout.max_new_tokens={}", *args.max_new_tokens));
  if (args.seed) out.push_back(fmt::format("rollout.seed={}", *args.seed));
  return out;
}

// The same command for each rank, without --nproc.
std::vector<std::string> rank_args(const GenerateArgs& args) {
  std::vector<std::string> out = {"generate", "--model", args.model_dir, "--question", args.question};
  auto add = [&](const char* flag, const std::string& value) {
    if (!value.empty()) out.insert(out.end(), {flag, value});
  };
  add("--config", args.config_path);
  add("--video", args.video);
  add("--embedding-key", args.embedding_key);
  add("--cache-url", args.cache_url);
  for (const std::string& option : args.options) add("--option", option);
  if (args.n) add("--n", std::to_string(*args.n));
  if (args.temperature) add("--temperature", fmt::format("{}", *args.temperature));
  if (args.top_p) add("--top-p", fmt::format("{}", *args.top_p));
  if (args.top_k) add("--top-k", std::to_string(*args.top_k));
  if (args.max_new_tokens) add("--max-new-tokens", std::to_string(*args.max_new_tokens));
  if (args.seed) add("--seed", std::to_string(*args.seed));
  return out;
}

struct Video {
  at::Tensor rows;  // [t·h·w/4, D]
  model::GridTHW grid{};
  double second_per_grid_t = 0;
};

Video video_from_cache(const GenerateArgs& args, const model::QwenVLImpl& model) {
  cache::EmbeddingCache cache(cache::RedisEndpoint::parse(args.cache_url));
  std::optional<cache::CachedEmbedding> entry = cache.get(args.embedding_key);
  if (!entry) {
    throw InputError({"", 0, "--embedding-key", args.embedding_key},
                     fmt::format("the cache at {} holds no such entry", args.cache_url));
  }
  const pipeline::VideoEntryFacts facts = pipeline::read_video_entry(
      args.embedding_key, entry->manifest.metadata, pipeline::vision_params_of(model.config().vision));
  const model::GridTHW& grid = facts.grid_thw;
  const int64_t rows = grid[0] * grid[1] * grid[2] / model.config().vision.merge_units();
  const at::Tensor& tensor = entry->tensor;
  if (tensor.dim() != 2 || tensor.size(0) != rows || tensor.size(1) != model.config().text.hidden_size) {
    throw InputError(
        {"", 0, "--embedding-key", args.embedding_key},
        fmt::format("the entry holds rows {}; this model's prompt needs [{}, {}] for grid ({}, {}, {})",
                    fmt::join(tensor.sizes(), "x"), rows, model.config().text.hidden_size, grid[0], grid[1],
                    grid[2]));
  }
  return {tensor, grid, facts.second_per_grid_t};
}

Video video_from_file(const GenerateArgs& args, const Config& config, model::QwenVLImpl& model,
                      const std::shared_ptr<sp::Mesh>& mesh) {
  pipeline::VideoRecipe recipe = pipeline::video_recipe_from(config);
  recipe.vision = pipeline::vision_params_of(model.config().vision);
  recipe.check();
  pipeline::PreparedVideo video = pipeline::prepare_video(args.video, recipe);
  pipeline::warn_if_damaged(args.video, video, recipe);
  const at::Tensor pixels = video.patches.pixel_values.to(model.lm_head_weight().device());
  const std::vector<model::GridTHW> grids = {video.patches.grid_thw};
  at::Tensor rows =
      mesh ? sp::encode_video_sharded(model, pixels, grids, *mesh) : model.encode_video(pixels, grids);
  return {rows, video.patches.grid_thw, 2.0 / video.pick.sample_fps};
}

int run_generate_rank(const GenerateArgs& args, const std::shared_ptr<sp::Mesh>& mesh) {
  const Config config = Config::load(args.config_path, overrides_of(args));
  const model::ModelSettings settings = model::model_settings_from(config);
  model::QwenVL model = model::load_model(settings.path, settings.dtype, settings.device);
  model->eval();
  const model::Tokenizer tokenizer = model::Tokenizer::load(settings.path);
  at::NoGradGuard no_grad;

  const Video video =
      args.video.empty() ? video_from_cache(args, *model) : video_from_file(args, config, *model, mesh);
  model::PromptRequest prompt;
  prompt.question = args.question;
  prompt.options = args.options;
  prompt.grid_thw = video.grid;
  const model::VideoPrompt rendered =
      model::render_prompt(tokenizer, prompt, model::PromptOptions::from_config(config),
                           model->config().vision.spatial_merge_size);
  GenerationRequest request;
  request.id = "generate";
  request.n = config.get<int64_t>("rollout.n");
  request.sampling = SamplingParams::from_config(config);
  request.prompt.input_ids =
      at::tensor(std::vector<int64_t>(rendered.ids.begin(), rendered.ids.end()), at::kLong).unsqueeze(0);
  request.prompt.video_embeds = video.rows;
  request.prompt.video_grids = {video.grid};
  request.prompt.second_per_grid_ts = {video.second_per_grid_t};

  EngineOptions options = EngineOptions::from_config(config);
  options.max_batch_rows = std::max(options.max_batch_rows, request.n);
  Engine engine(model, tokenizer, options, mesh);
  const bool leader = !mesh || mesh->sp_rank() == 0;
  std::unique_ptr<Progress> progress;
  const int64_t prompt_tokens = request.prompt.input_ids.size(1);
  if (leader && prompt_tokens > options.prefill_chunk) {
    if (mesh) {
      LVRL_INFO("prefilling {} prompt tokens over {} ranks", prompt_tokens, mesh->sp_size());
    } else {
      progress = std::make_unique<Progress>("prefill", prompt_tokens, "token");
      engine.on_prefill_progress = [&](int64_t done, int64_t) { progress->advance(done - progress->done()); };
    }
  }
  const GenerationResult result = engine.generate({std::move(request)})[0];
  if (progress) progress->finish();
  if (!leader) return 0;
  for (const GeneratedAnswer& answer : result.answers) {
    std::vector<model::TokenId> ids(answer.token_ids.begin(), answer.token_ids.end());
    nlohmann::json line = {{"text", tokenizer.decode(ids, /*skip_special_tokens=*/true)},
                           {"token_ids", answer.token_ids},
                           {"logprobs", answer.logprobs},
                           {"finish_reason", finish_reason_name(answer.finish)},
                           {"seed", answer.seed}};
    std::cout << line.dump() << "\n";
  }
  std::cout.flush();
  return 0;
}

int run_generate(const GenerateArgs& args) {
  if (args.video.empty() == args.embedding_key.empty()) {
    throw InputError({"", 0, "--video", args.video},
                     "give either --video FILE or --embedding-key KEY --cache-url URL");
  }
  if (!args.embedding_key.empty() && args.cache_url.empty()) {
    throw InputError({"", 0, "--cache-url", ""}, "--embedding-key needs the cache's --cache-url");
  }
  if (args.nproc < 1)
    throw InputError({"", 0, "--nproc", std::to_string(args.nproc)}, "expected 1 or more ranks");
  if (args.nproc == 1) return run_generate_rank(args, nullptr);
  const char* world = std::getenv("WORLD_SIZE");
  if (world == nullptr) {  // the launcher: start the ranks and wait for them
    sp::RankRunOptions options;
    options.nproc = args.nproc;
    options.worker_args = rank_args(args);
    options.worker_args.insert(options.worker_args.end(), {"--nproc", std::to_string(args.nproc)});
    options.threads_per_rank = 0;
    return sp::run_on_ranks(options).exit_code;
  }
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  if (env.world_size != args.nproc) {
    throw InputError({"", 0, "--nproc", std::to_string(args.nproc)},
                     fmt::format("this process is one of WORLD_SIZE={} ranks", env.world_size));
  }
  const Config config = Config::load(args.config_path, overrides_of(args));
  const sp::SpMode mode = sp::parse_sp_mode(config.get<std::string>("rollout.sp_mode"));
  sp::MeshShape shape;
  shape.sp = args.nproc;
  if (mode != sp::SpMode::Ulysses && mode != sp::SpMode::Hybrid) shape.ring = args.nproc;
  return run_generate_rank(args, sp::Mesh::create(env, shape, c10::kCPU));
}

const RegisterCommand generate_command(
    "generate", "Sample answers to one question about one video, one JSON line per answer",
    [](CLI::App& app) {
      auto args = std::make_shared<GenerateArgs>();
      app.add_option("--model", args->model_dir, "checkpoint directory (config.json, safetensors, tokenizer)")
          ->required();
      app.add_option("--config", args->config_path,
                     "run config (YAML) for rollout.*, prompt.*, preprocess.*");
      app.add_option("--video", args->video, "video file (decoded and encoded here)");
      app.add_option("--embedding-key", args->embedding_key, "the video's entry in the embedding cache");
      app.add_option("--cache-url", args->cache_url, "the embedding cache (redis://… or unix://…)");
      app.add_option("--question", args->question, "the question")->required();
      app.add_option("--option", args->options, "an answer option, \"A. …\" (repeat for each)");
      app.add_option("--n", args->n, "answers to sample (rollout.n)");
      app.add_option("--temperature", args->temperature,
                     "softmax temperature; 0 = greedy (rollout.temperature)");
      app.add_option("--top-p", args->top_p, "nucleus mass (rollout.top_p)");
      app.add_option("--top-k", args->top_k, "keep the k most likely tokens (rollout.top_k)");
      app.add_option("--max-new-tokens", args->max_new_tokens,
                     "answer length limit (rollout.max_new_tokens)");
      app.add_option("--seed", args->seed, "seed of the first answer; answer i uses seed + i (rollout.seed)");
      app.add_option("--nproc", args->nproc, "sequence-parallel ranks")->capture_default_str();
      return [args] { return run_generate(*args); };
    });

}  // namespace
}  // namespace lvrl::rollout
