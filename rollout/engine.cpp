#include "rollout/engine.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "sp/comm.h"
#include "sp/decode_cache.h"
#include "sp/mesh.h"

namespace lvrl::rollout {

struct Engine::Pending {
  GenerationResult result;
  SamplingParams sampling;
  int64_t unfinished = 0;  // answers still running
};

struct Engine::Row {
  std::shared_ptr<Pending> request;
  int64_t answer = 0;  // index in the request
  at::Generator generator;
  StopChecker stop;
  int64_t last_token = -1;
  bool finished = false;
};

EngineOptions EngineOptions::from_config(const Config& config) {
  EngineOptions options;
  options.max_batch_rows = config.get<int64_t>("rollout.max_batch_rows");
  options.prefill_chunk = config.get<int64_t>("rollout.prefill_chunk");
  options.sp_mode = sp::parse_sp_mode(config.get<std::string>("rollout.sp_mode"));
  return options;
}

Engine::Engine(model::QwenVL model, model::Tokenizer tokenizer, EngineOptions options,
               std::shared_ptr<sp::Mesh> mesh)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options), mesh_(std::move(mesh)) {
  LVRL_ASSERT(
      options_.max_batch_rows > 0 && options_.prefill_chunk > 0,
      fmt::format("engine of {} rows, prefill chunk {}", options_.max_batch_rows, options_.prefill_chunk));
  if (mesh_ && mesh_->sp_size() == 1) mesh_ = nullptr;
  const at::Tensor weight = model_->lm_head_weight();
  allowed_ = sampling_token_mask(tokenizer_, weight.size(0)).to(weight.device());
  const model::TextConfig& text = model_->config().text;
  if (mesh_) {
    cache_ = sp::make_sharded_decode_cache(text, 1, weight.scalar_type(), weight.device(), mesh_);
  } else {
    cache_ = std::make_unique<model::SharedPrefixKVCache>(text, 1, weight.scalar_type(), weight.device());
  }
}

Engine::~Engine() = default;

int64_t Engine::running_rows() const {
  return static_cast<int64_t>(rows_.size());
}

bool Engine::leader() const {
  return !mesh_ || mesh_->sp_rank() == 0;
}

void Engine::submit(GenerationRequest request) {
  const std::string who = fmt::format("request {}", request.id);
  if (request.n < 1 || request.n > options_.max_batch_rows) {
    throw InputError(
        {"", 0, "rollout.n", std::to_string(request.n)},
        fmt::format("{} asks for {} answers; the engine decodes 1 to rollout.max_batch_rows = {} "
                    "together",
                    who, request.n, options_.max_batch_rows));
  }
  const at::Tensor& ids = request.prompt.input_ids;
  if (!ids.defined() || ids.dim() != 2 || ids.size(0) != 1 || ids.size(1) == 0) {
    throw InputError({"", 0, "prompt", who}, fmt::format("{} has no prompt of one row of token ids", who));
  }
  request.sampling.check();
  std::lock_guard<std::mutex> lock(queue_mutex_);
  queue_.push_back(std::move(request));
}

bool Engine::idle() const {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  return queue_.empty() && rows_.empty() && !pending_swap_;
}

void Engine::swap_weights(std::function<void(model::QwenVLImpl&)> load) {
  LVRL_ASSERT(!pending_swap_, "a weight swap is already pending");
  pending_swap_ = std::move(load);
  if (rows_.empty()) admit();
}

void Engine::admit() {
  if (pending_swap_) {
    if (!rows_.empty()) return;  // drain first: no answer mixes two policies
    std::function<void(model::QwenVLImpl&)> load = std::move(pending_swap_);
    pending_swap_ = nullptr;
    load(*model_);
  }
  for (;;) {
    GenerationRequest request;
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      if (queue_.empty() || running_rows() + queue_.front().n > options_.max_batch_rows) return;
      request = std::move(queue_.front());
      queue_.pop_front();
    }
    start_request(std::move(request));
  }
}

void Engine::start_request(GenerationRequest request) {
  at::NoGradGuard no_grad;
  const int64_t prompt_tokens = request.prompt.input_ids.size(1);
  model::PrefilledPrompt prefilled =
      mesh_ ? sp::prefill_prompt_sharded(*model_, request.prompt, mesh_, options_.sp_mode)
            : model::prefill_prompt(*model_, request.prompt, options_.prefill_chunk, on_prefill_progress);
  stats_.prefill_tokens += prompt_tokens;

  auto pending = std::make_shared<Pending>();
  pending->result.id = request.id;
  pending->result.prompt_tokens = prompt_tokens;
  pending->result.answers.resize(request.n);
  pending->sampling = request.sampling;
  pending->unfinished = request.n;
  requests_.push_back(pending);

  cache_->reserve(request.sampling.max_new_tokens);
  const int64_t first = cache_->add_rows(prefilled.prefix, request.n);
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < request.n; ++i) {
    const uint64_t seed = request.sampling.seed + static_cast<uint64_t>(i);
    pending->result.answers[i].seed = seed;
    rows_.push_back(Row{pending, i, row_generator(seed), StopChecker(tokenizer_, pending->sampling)});
    rows.push_back(first + i);
  }
  // Every answer's first token comes from the prompt's own logits.
  sample_rows(prefilled.logits.unsqueeze(0).expand({request.n, prefilled.logits.size(0)}), rows);
}

void Engine::sample_rows(const at::Tensor& logits, const std::vector<int64_t>& rows) {
  const auto count = static_cast<int64_t>(rows.size());
  at::Tensor tokens = at::empty({count}, at::kLong);
  SampledTokens sampled;
  if (leader()) {
    std::vector<const SamplingParams*> params;
    std::vector<at::Generator> generators;
    for (int64_t row : rows) {
      params.push_back(&rows_[row].request->sampling);
      generators.push_back(rows_[row].generator);  // shares the row's generator state
    }
    sampled = sample_tokens(logits, params, generators, allowed_);
    tokens.copy_(sampled.tokens.to(at::kCPU));
  }
  if (mesh_) sp::broadcast(mesh_->sp(), tokens, 0);
  const at::Tensor logprobs = leader() ? sampled.logprobs.to(at::kCPU) : at::Tensor();
  const at::Tensor sampled_logprobs = leader() ? sampled.sampled_logprobs.to(at::kCPU) : at::Tensor();
  for (int64_t j = 0; j < count; ++j) {
    Row& row = rows_[rows[j]];
    GeneratedAnswer& answer = row.request->result.answers[row.answer];
    const int64_t token = tokens[j].item<int64_t>();
    answer.token_ids.push_back(token);
    if (leader()) {
      answer.logprobs.push_back(logprobs[j].item<float>());
      answer.sampled_logprobs.push_back(sampled_logprobs[j].item<float>());
    }
    row.last_token = token;
    const FinishReason finish = row.stop.push(static_cast<model::TokenId>(token));
    if (finish != FinishReason::None) {
      row.finished = true;
      answer.finish = finish;
      --row.request->unfinished;
    }
  }
}

std::vector<GenerationResult> Engine::retire_finished() {
  std::vector<int64_t> keep;
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (!rows_[i].finished) keep.push_back(static_cast<int64_t>(i));
  }
  if (keep.size() < rows_.size()) {
    cache_->keep_rows(keep);
    std::vector<Row> kept;
    for (int64_t i : keep) kept.push_back(std::move(rows_[i]));
    rows_ = std::move(kept);
  }
  std::vector<GenerationResult> done;
  std::vector<std::shared_ptr<Pending>> open;
  for (auto& request : requests_) {
    if (request->unfinished == 0) {
      done.push_back(std::move(request->result));
    } else {
      open.push_back(std::move(request));
    }
  }
  requests_ = std::move(open);
  return done;
}

std::vector<GenerationResult> Engine::step() {
  at::NoGradGuard no_grad;
  admit();
  std::vector<GenerationResult> done = retire_finished();  // answers that ended at their first token
  if (!rows_.empty()) {
    std::vector<int64_t> last(rows_.size()), all(rows_.size());
    for (size_t i = 0; i < rows_.size(); ++i) {
      last[i] = rows_[i].last_token;
      all[i] = static_cast<int64_t>(i);
    }
    const at::Tensor weight = model_->lm_head_weight();
    at::Tensor logits = model_->decode(at::tensor(last, at::kLong).to(weight.device()), *cache_);
    stats_.peak_kv_bytes = std::max(stats_.peak_kv_bytes, cache_->bytes());
    ++stats_.decode_steps;
    stats_.decoded_tokens += static_cast<int64_t>(rows_.size());
    sample_rows(logits, all);
    for (GenerationResult& result : retire_finished()) done.push_back(std::move(result));
  }
  return done;
}

std::vector<GenerationResult> Engine::generate(std::vector<GenerationRequest> requests) {
  std::vector<std::string> order;
  for (GenerationRequest& request : requests) {
    order.push_back(request.id);
    submit(std::move(request));
  }
  std::vector<GenerationResult> results;
  while (!idle()) {
    for (GenerationResult& result : step()) results.push_back(std::move(result));
  }
  std::vector<GenerationResult> ordered;
  for (const std::string& id : order) {
    auto found = std::find_if(results.begin(), results.end(), [&](const auto& r) { return r.id == id; });
    LVRL_ASSERT(found != results.end(), fmt::format("request {} produced no result", id));
    ordered.push_back(std::move(*found));
    results.erase(found);
  }
  return ordered;
}

}  // namespace lvrl::rollout
