// bench_train_step: the trainer's step (trainer/policy_gradient.h's accumulate_gradients, then
// clip_grad_norm and AdamW) on CPU, float32, each figure against an anchor measured in the same run
// (docs/trainer.md#the-step):
//
//   1. Cache against re-encoding. One RL step of the `small` preset: a group of G answers (T tokens
//      each, equal lengths) to one video question, the decoder running every answer in full over the
//      video rows, loss = policy_loss (PPO-clip with the trainer's defaults, KL off: no reference
//      model), token-mean aggregation, the trainer's defaults (micro_batch_tokens 16384, recompute on),
//      grad-norm clip 1.0, one AdamW update.
//      With the cache, the step gets the video's rows with pipeline::get_or_encode from a private
//      redis-server over a unix socket (a hit: hash the file, get the entry); without it, the step
//      re-encodes the video as `lvrl preprocess` does (prepare_video: decode, resize, patchify; the
//      vision tower). The anchor: that encode alone. Figure: (step without cache − step with cache) /
//      encode alone, target >= 90% (the cache saves at least 90% of what the encode costs).
//   2. Compute. The same step's forward + backward (accumulate_gradients) in tokens/s and model
//      GFLOP/s, counted as
//          6 · tokens · P_linear                 (P_linear = the decoder layers' linear weights,
//                                                 q, k, v, o, gate, up, down; biases left out)
//        + Σ_answers 6 · L · H · Dh · S²         (causal attention: QKᵀ and PV are 2·H·Dh·S²/2 FLOPs
//                                                 each forward, backward twice the forward)
//        + 6 · scored · V · D                    (the LM head on the scored rows)
//      with tokens = every answer's whole sequence (prompt, video rows and answer), L layers, S the
//      sequence length. Recompute's second forward (layers and LM-head chunks) is work the step does
//      but is not counted: this is model FLOP/s. Anchor: at::mm of the seven linear shapes of a decoder
//      layer at the step's micro-batch rows (B·S of its largest micro-batch), Σ FLOPs / Σ best times.
//      Target >= 40%.
//   3. Sequence parallelism. accumulate_gradients over one video question of --sp-length tokens (video
//      rows + text + 256 scored answer tokens) on the `tiny` preset, SP = 2 (two processes, one
//      intra-op thread each, Gloo; sp.mode ulysses, the trainer's default) against SP = 1 (one process,
//      one thread). Step time = the slower rank's. Target >= 1.6x. Both runs must agree on the loss
//      and the gradient norm (1e-4 relative; exit 1 otherwise). A second anchor, as in
//      bench_sp_attention: two SP = 1 copies at once (DP = 2, each rank the whole batch); 2 × their
//      step time over one copy's is the capacity the machine had for a second rank (2 on free cores).
//   4. Activation recompute. The same kind of batch at --memory-length tokens (<= 256 scored rows) on
//      the `small` preset, GradientOptions::recompute off and on in turn (off, on, off, on) in one
//      process (--threads intra-op threads), so load from other jobs hits both alike. Peak memory
//      growth of a step = VmHWM − VmRSS at its baseline, taken after the previous step's gradients are
//      dropped and the CPU allocator's kept blocks released (so one setting's blocks never count in the
//      other's RSS), VmHWM reset there through /proc/self/clear_refs: RSS high-water, the judged figure;
//      beside it the CPU allocator's peak of large tensors over the same step (core/cpu_allocator.h).
//      Each setting's figure is its largest growth and best time. Targets: growth with recompute
//      <= 0.6x of without, time <= 1.4x. Loss must agree bit for bit, the gradient norm within 1e-5
//      relative (exit 1 otherwise).
//
// Every rank process (3 and 4) is this executable re-executed through sp/rank_run.h with a hidden
// --worker flag, as bench_sp_attention starts its ranks. Timing on a shared machine: every figure of
// 1 and 2 is taken once per round after an untimed warm-up step (its first get_or_encode is the miss
// that encodes and puts the entry), and each figure is its best round; 3 runs --rounds rounds of
// three launches (SP = 1, SP = 2, the two copies), best of them (each launch runs two steps, the best
// counted); 4 is one launch of two steps per setting. Every step of 4 faults its memory in afresh (the kept
// blocks are released), so both settings pay for it. The weights are init_weights' (seeded), the answers
// random ids; timing does not depend on the values.
//
// Verified (exit 1 otherwise): the hit's rows equal the encode's byte for byte, every loss is
// finite, and the SP and recompute agreements above. A missed target prints "not met" (exit 0).
//
//   bench_train_step [--quick] [--clip-seconds N] [--group G] [--answer-tokens T] [--rounds R]
//                    [--threads N] [--sp-length L] [--sp-mode ulysses|zigzag|ring] [--memory-length L]
//                    [--scored N] [--cache DIR]
//                    [--results bench/RESULTS.md]
// Defaults: a 4 s clip made as bench_preprocess makes its own (1280x720, 30 fps testsrc2 H.264,
// generated once with the ffmpeg CLI into the cache dir, untimed; --clip-seconds 10 is bench_preprocess
// --quick's clip and 30 its full one: every answer runs the decoder over all the video rows, so a step
// there takes minutes on 2 cores), G = 4, T = 64, 2 rounds, --threads = cores, 16k tokens for 3 and 4,
// 256 scored rows: 8 to 10 minutes on 2 shared cores. --quick: a 2 s clip, G = 2, one round, 4k tokens
// for 3 and 4 (about a minute). Environment: LVRL_BENCH_CACHE (default: cache/ beside this executable,
// shared with bench_preprocess).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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
#include "core/cpu_allocator.h"
#include "core/dataset.h"
#include "core/temp_dir.h"
#include "model/qwen_vl.h"
#include "pipeline/video_recipe.h"
#include "pipeline/video_rows.h"
#include "pipeline/vision_encoder.h"
#include "sp/comm.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "sp/rank_run.h"
#include "trainer/optimizer.h"
#include "trainer/policy_gradient.h"
#include "trainer/policy_loss.h"
#include "trainer/step_flops.h"
#include "trainer/train_batch.h"

namespace fs = std::filesystem;
using lvrl::seconds_since;
using lvrl::SteadyClock;
using nlohmann::json;
namespace model = lvrl::model;
namespace trainer = lvrl::trainer;
namespace pipeline = lvrl::pipeline;
namespace sp = lvrl::sp;
using lvrl::trainer::layer_linears;
using lvrl::trainer::LinearShape;
using lvrl::trainer::step_flops;
using lvrl::trainer::StepFlops;

namespace {
constexpr uint64_t kWeightSeed = 1234;
constexpr uint64_t kBatchSeed = 77;
constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr int64_t kPromptHead = 12, kPromptTail = 20;  // text tokens around the video block
constexpr double kSpTolerance = 1e-4;                  // SP = 2 against SP = 1, relative
constexpr double kRecomputeGradTolerance = 1e-5;       // recompute on against off, relative
// Steps per launch (figure 3) and per setting (figure 4); the best counted.
constexpr int kSpReps = 2, kMemoryReps = 2;

// The targets.
constexpr double kCacheTarget = 0.9, kComputeTarget = 0.4, kSpTarget = 1.6, kMemoryTarget = 0.6,
                 kMemoryTimeTarget = 1.4;

[[noreturn]] void fail_setup(const std::string& what) {
  std::cerr << "bench_train_step: " << what << "\n";
  std::exit(2);
}

const char* verdict(bool met) {
  return met ? "met" : "not met";
}

struct Options {
  bool quick = false;
  int clip_seconds = 4;
  int64_t group = 4;           // G
  int64_t answer_tokens = 64;  // T
  int rounds = 2;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t sp_length = 16384;
  int64_t memory_length = 16384;
  int64_t scored = 256;
  fs::path cache;
  std::string results;
  std::vector<std::string> given;  // the flags given, for the RESULTS.md command line
};

// What one rank process runs (figures 3 and 4).
struct WorkerSpec {
  std::string preset = "tiny";
  int64_t length = 16384;
  int64_t scored = 256;
  bool recompute = true;
  int reps = 2;
  int threads = 1;
  std::string sp_mode = "ulysses";
  bool independent = false;  // every rank trains the whole batch alone (DP = P, SP = 1): the capacity anchor
  bool alternate = false;    // recompute off and on in turn, rep by rep (figure 4)
};

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

double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double mib(double bytes) {
  return bytes / 1048576.0;
}

// ---- Batches -------------------------------------------------------------------------------------

std::vector<int64_t> random_ids(int64_t count, at::Generator& generator) {
  const at::Tensor ids = at::randint(1, 150000, {count}, generator, at::kLong);
  return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + count);
}

// The prompt: kPromptHead text tokens, the video block (start, one pad per row, end), `tail` text tokens.
std::vector<int64_t> video_prompt(const model::QwenConfig& config, int64_t video_rows, int64_t head,
                                  int64_t tail, at::Generator& generator) {
  std::vector<int64_t> ids = random_ids(head, generator);
  ids.push_back(config.vision_start_token_id);
  ids.insert(ids.end(), video_rows, config.video_token_id);
  ids.push_back(config.vision_end_token_id);
  const std::vector<int64_t> after = random_ids(tail, generator);
  ids.insert(ids.end(), after.begin(), after.end());
  return ids;
}

// One answer of `tokens` random ids after `prompt`, π_old near a random model's log(1/V).
trainer::TrainSequence answer(const std::vector<int64_t>& prompt, int64_t tokens, double advantage,
                              at::Generator& generator) {
  trainer::TrainSequence sequence;
  sequence.ids = prompt;
  const std::vector<int64_t> response = random_ids(tokens, generator);
  sequence.ids.insert(sequence.ids.end(), response.begin(), response.end());
  sequence.response_start = static_cast<int64_t>(prompt.size());
  const at::Tensor old =
      at::randn({tokens}, generator, at::TensorOptions().dtype(at::kFloat)).mul_(0.1).sub_(12);
  sequence.old_logprobs.assign(old.data_ptr<float>(), old.data_ptr<float>() + tokens);
  sequence.sampled_logprobs = sequence.old_logprobs;
  sequence.advantage = advantage;
  sequence.video = 0;
  sequence.group = 0;
  return sequence;
}

// Figure 1: G answers of T tokens to one question about `video`; advantages (i − (G−1)/2), scaled
// to unit standard deviation as GRPO's would be.
trainer::TrainBatch group_batch(const model::QwenConfig& config, trainer::TrainVideo video, int64_t group,
                                int64_t answer_tokens) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(kBatchSeed);
  trainer::TrainBatch batch;
  const std::vector<int64_t> prompt =
      video_prompt(config, video.rows.size(0), kPromptHead, kPromptTail, generator);
  batch.videos.push_back(std::move(video));
  double mean = static_cast<double>(group - 1) / 2, variance = 0;
  for (int64_t i = 0; i < group; ++i) variance += (i - mean) * (i - mean) / static_cast<double>(group);
  const double scale = variance > 0 ? 1 / std::sqrt(variance) : 1;
  for (int64_t i = 0; i < group; ++i) {
    batch.sequences.push_back(answer(prompt, answer_tokens, (i - mean) * scale, generator));
  }
  return batch;
}

// Figures 3 and 4: one answer of `scored` tokens whose whole sequence is exactly `length` tokens,
// most of them video rows (random [N, D], grid {t, 16, 16}: 64 rows per temporal patch).
trainer::TrainBatch long_video_batch(const model::QwenConfig& config, int64_t length, int64_t scored) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(kBatchSeed);
  const int64_t side = 16, per_t = side * side / config.vision.merge_units();
  const int64_t t = (length - scored - 2 - kPromptHead - kPromptTail) / per_t;
  if (t < 1) fail_setup(fmt::format("a length of {} tokens leaves no room for video rows", length));
  trainer::TrainVideo video;
  video.rows =
      at::randn({t * per_t, config.text.hidden_size}, generator, at::TensorOptions().dtype(at::kFloat));
  video.grid = {t, side, side};
  video.second_per_grid_t = 1;
  const int64_t head = length - scored - 2 - t * per_t - kPromptTail;  // text fills up to `length`
  trainer::TrainBatch batch;
  const std::vector<int64_t> prompt = video_prompt(config, t * per_t, head, kPromptTail, generator);
  batch.videos.push_back(std::move(video));
  batch.sequences.push_back(answer(prompt, scored, 1.0, generator));
  return batch;
}

// PPO-clip with the trainer's defaults (policy_loss.h) but no KL term, π_old and the behaviour log-probs
// from the batch.
trainer::TokenLoss ppo_loss() {
  return [](const trainer::TokenBatch& tokens) {
    trainer::PolicyLossInputs inputs;
    inputs.logprobs = tokens.logprobs;
    inputs.old_logprobs = tokens.old_logprobs;
    inputs.advantages = tokens.advantages;
    inputs.mask = tokens.mask;
    inputs.behaviour_logprobs = tokens.sampled_logprobs;
    trainer::PolicyLossOptions options;
    options.kl.coef = 0;  // no reference model: TokenBatch carries no reference log-probs
    return trainer::policy_loss(options, inputs).per_token;
  };
}

std::vector<at::Tensor> language_parameters(model::QwenVLImpl& qwen) {
  std::vector<at::Tensor> out;
  for (const auto& item : qwen.named_parameters()) {
    if (item.key().rfind("visual.", 0) != 0) out.push_back(item.value());
  }
  return out;
}

// ---- FLOPs ---------------------------------------------------------------------------------------

// Best of 3 at::mm [rows, in] × [in, out] per shape, seconds.
std::vector<double> mm_times(const model::TextConfig& text, int64_t rows) {
  std::vector<double> times;
  for (const LinearShape& shape : layer_linears(text)) {
    const at::Tensor a = at::randn({rows, shape.in}), b = at::randn({shape.in, shape.out});
    (void)at::mm(a, b);  // warm-up
    double best = kInfinity;
    for (int r = 0; r < 3; ++r) {
      const SteadyClock::time_point start = SteadyClock::now();
      const at::Tensor c = at::mm(a, b);
      best = std::min(best, seconds_since(start));
    }
    times.push_back(best);
  }
  return times;
}

// ---- Worker: one rank of figure 3 or 4 -------------------------------------------------------------

// Per setting (recompute off then on with --alternate, else --recompute's), per rep: one
// accumulate_gradients, the settings alternating rep by rep so that load from other jobs hits them
// alike. Each step's memory is measured from its own baseline: VmRSS after the previous step's
// gradients are dropped (and, alternating, the allocator's kept blocks released, so that one
// setting's blocks never count in the other's RSS), VmHWM reset there.
int run_worker(const WorkerSpec& spec) {
  at::set_num_threads(spec.threads);
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  const sp::SpMode mode = sp::parse_sp_mode(spec.sp_mode);
  const int ranks = env.world_size;
  const int sp_size = spec.independent ? 1 : ranks;
  const sp::MeshShape shape{sp_size, mode == sp::SpMode::Ulysses ? sp_size : 1,
                            mode == sp::SpMode::Ulysses ? 1 : sp_size};
  const auto mesh = sp::Mesh::create(env, shape, c10::Device(c10::kCPU));
  model::QwenVL qwen(model::QwenConfig::preset(spec.preset));
  model::init_weights(*qwen, kWeightSeed);
  const trainer::TrainBatch batch = long_video_batch(qwen->config(), spec.length, spec.scored);
  trainer::GradientOptions options;
  options.sp_mode = mode;
  options.micro_batch_tokens = std::max<int64_t>(options.micro_batch_tokens, spec.length);
  const trainer::TokenLoss loss = ppo_loss();
  const std::vector<at::Tensor> parameters = language_parameters(*qwen);
  auto barrier = [&] {
    at::Tensor token = at::zeros({1}, at::kFloat);
    sp::all_reduce_sum(mesh->world(), token);
  };
  const std::vector<bool> settings =
      spec.alternate ? std::vector<bool>{false, true} : std::vector<bool>{spec.recompute};
  const auto count = static_cast<int64_t>(settings.size());
  // [settings, reps] seconds and CPU seconds; [settings] largest growth, tensor peak, baseline
  at::Tensor times = at::zeros({count, spec.reps}, at::kDouble), cpu = at::zeros_like(times);
  at::Tensor growth = at::zeros({count}, at::kDouble), tensor_peak = at::zeros_like(growth),
             baseline_rss = at::zeros_like(growth);
  std::vector<double> losses(settings.size()), norms(settings.size());
  bool peak_reset = true;
  barrier();  // every rank past start-up
  for (int rep = 0; rep < spec.reps; ++rep) {
    for (int64_t k = 0; k < count; ++k) {
      options.recompute = settings[k];
      qwen->zero_grad(/*set_to_none=*/true);
      if (spec.alternate) lvrl::cpu_allocator().release_kept();
      barrier();
      const int64_t baseline = lvrl::bench::status_bytes("VmRSS");
      peak_reset &= lvrl::bench::reset_peak_rss();
      lvrl::cpu_allocator().reset_peak();
      const int64_t baseline_live = lvrl::cpu_allocator().stats().live_bytes;
      const SteadyClock::time_point start = SteadyClock::now();
      const double cpu_start = process_cpu_seconds();
      const trainer::GradientResult result = trainer::accumulate_gradients(*qwen, batch, mesh, options, loss);
      times[k][rep] = seconds_since(start);
      cpu[k][rep] = process_cpu_seconds() - cpu_start;
      const int64_t step_growth = lvrl::bench::status_bytes("VmHWM") - baseline;
      const int64_t step_tensors =
          lvrl::cpu_allocator_installed() ? lvrl::cpu_allocator().stats().peak_live_bytes - baseline_live : 0;
      growth[k] = std::max(growth[k].item<double>(), static_cast<double>(step_growth));
      tensor_peak[k] = std::max(tensor_peak[k].item<double>(), static_cast<double>(step_tensors));
      baseline_rss[k] = static_cast<double>(baseline);
      losses[k] = result.loss;
      // Every rank holds the summed gradient: its norm, measured only.
      norms[k] = trainer::clip_grad_norm(parameters, 0, nullptr);
    }
  }
  const at::Tensor row = at::cat({times.flatten(), cpu.flatten(), growth, tensor_peak, baseline_rss});
  const at::Tensor all = sp::all_gather_cat(mesh->world(), row, 0).view({ranks, -1});  // [ranks, row]
  if (mesh->rank() != 0) return 0;
  const int64_t cells = count * spec.reps;
  json report;
  for (int64_t k = 0; k < count; ++k) {
    auto field = [&](int64_t offset, int64_t length) {  // [ranks, length]
      return all.narrow(1, offset, length);
    };
    const at::Tensor rank_times = field(k * spec.reps, spec.reps),
                     rank_cpu = field(cells + k * spec.reps, spec.reps);
    const at::Tensor slowest = std::get<0>(rank_times.max(0));  // [reps] the slower rank's time
    json setting = {{"recompute", static_cast<bool>(settings[k])},
                    {"loss", losses[k]},
                    {"grad_norm", norms[k]},
                    {"finite", std::isfinite(losses[k]) && std::isfinite(norms[k])},
                    {"peak_reset", peak_reset},
                    {"allocator", lvrl::cpu_allocator_installed() ? "caching" : "system"},
                    {"growth", field(2 * cells + k, 1).max().item<double>()},
                    {"tensor_peak", field(2 * cells + count + k, 1).max().item<double>()},
                    {"baseline_rss", field(2 * cells + 2 * count + k, 1).max().item<double>()},
                    {"video_rows", batch.videos[0].rows.size(0)},
                    {"tokens", batch.sequences[0].length()}};
    for (int rep = 0; rep < spec.reps; ++rep) setting["times"].push_back(slowest[rep].item<double>());
    for (int r = 0; r < ranks; ++r) {  // each rank's best step: wall and CPU seconds
      setting["rank_times"].push_back(rank_times[r].min().item<double>());
      setting["rank_cpu"].push_back(rank_cpu[r].min().item<double>());
    }
    report["settings"].push_back(setting);
  }
  sp::write_rank_result(report.dump());
  return 0;
}

struct WorkerRun {
  bool ran = false;
  json report;  // one setting's
  double best_s() const {
    double best = kInfinity;
    if (ran) {
      for (double t : report["times"]) best = std::min(best, t);
    }
    return best;
  }
};

// One launch of `nproc` ranks: a run per setting (two with spec.alternate, off then on).
std::vector<WorkerRun> launch(const WorkerSpec& spec, int nproc) {
  sp::RankRunOptions options;
  options.nproc = nproc;
  options.threads_per_rank = spec.threads;
  options.timeout_s = 1800;
  options.worker_args = {"--worker",
                         "--preset",
                         spec.preset,
                         "--length",
                         std::to_string(spec.length),
                         "--scored",
                         std::to_string(spec.scored),
                         "--recompute",
                         spec.recompute ? "1" : "0",
                         "--reps",
                         std::to_string(spec.reps),
                         "--threads",
                         std::to_string(spec.threads),
                         "--sp-mode",
                         spec.sp_mode,
                         "--independent",
                         spec.independent ? "1" : "0",
                         "--alternate",
                         spec.alternate ? "1" : "0"};
  const sp::RankRunResult result = sp::run_on_ranks(options);
  std::vector<WorkerRun> runs(spec.alternate ? 2 : 1);
  if (result.exit_code != 0 || result.results.empty() || result.results[0].empty()) {
    std::cerr << fmt::format("WRONG: the {} run of {} rank(s) failed (exit {}{})\n", spec.preset, nproc,
                             result.exit_code, result.timed_out ? ", timed out" : "");
    return runs;
  }
  const json report = json::parse(result.results[0]);
  for (size_t k = 0; k < runs.size(); ++k) {
    runs[k].report = report["settings"].at(k);
    runs[k].ran = runs[k].report.value("finite", false);
    if (!runs[k].ran)
      std::cerr << fmt::format("WRONG: the {} run of {} rank(s) has a non-finite loss\n", spec.preset, nproc);
  }
  return runs;
}

double relative_difference(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-30);
}

// ---- The clip ------------------------------------------------------------------------------------

// bench_preprocess's clip of `seconds`, made once (written to a temporary name, then renamed).
fs::path ensure_video(const fs::path& dir, int seconds) {
  fs::path path = dir / fmt::format("preprocess_1280x720_30fps_{}s.mp4", seconds);
  if (fs::exists(path)) return path;
  fs::path partial = path;
  partial += ".partial.mp4";
  const std::string command = fmt::format(
      "ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i "
      "testsrc2=size=1280x720:rate=30:duration={} "
      "-c:v libx264 -preset medium -g 250 -bf 3 -pix_fmt yuv420p -an {}",
      seconds, shell_quote(partial.string()));
  const SteadyClock::time_point begin = SteadyClock::now();
  const int status = std::system(command.c_str());
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_setup("generating the clip failed: " + command);
  fs::rename(partial, path);
  fmt::print("generated {} in {:.1f} s (not measured)\n", path.string(), seconds_since(begin));
  return path;
}

// ---- Figures 1 and 2 -------------------------------------------------------------------------------

struct StepTimes {
  double rows_s = kInfinity;      // get_or_encode (hit), or prepare_video + encode
  double gradient_s = kInfinity;  // accumulate_gradients: forward + backward
  double update_s = kInfinity;    // clip_grad_norm + AdamW::step
  double step_s = kInfinity;      // the whole step, rows to update
  void keep_best(const StepTimes& other) {
    rows_s = std::min(rows_s, other.rows_s);
    gradient_s = std::min(gradient_s, other.gradient_s);
    update_s = std::min(update_s, other.update_s);
    step_s = std::min(step_s, other.step_s);
  }
};

struct Encoded {
  at::Tensor rows;
  trainer::TrainVideo video;
};

// The re-encode: prepare_video (decode, resize, patchify) and the vision tower, as preprocess does.
Encoded encode(const std::string& clip, const pipeline::VideoRecipe& recipe,
               pipeline::VisionEncoder& encoder) {
  const pipeline::PreparedVideo prepared = pipeline::prepare_video(clip, recipe);
  Encoded out;
  out.rows = encoder.encode(prepared.patches);
  out.video.rows = out.rows;
  out.video.grid = prepared.patches.grid_thw;
  out.video.second_per_grid_t =
      static_cast<double>(recipe.vision.temporal_patch_size) / prepared.pick.sample_fps;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  WorkerSpec worker;
  bool is_worker = false;
  const char* env_cache = std::getenv("LVRL_BENCH_CACHE");
  options.cache =
      env_cache != nullptr ? fs::path(env_cache) : fs::read_symlink("/proc/self/exe").parent_path() / "cache";
  bool clip_given = false, group_given = false, rounds_given = false, sp_given = false, memory_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto text = [&]() -> std::string {
      if (i + 1 >= argc) fail_setup(arg + " needs a value");
      return argv[++i];
    };
    auto count = [&]() -> int64_t {
      const std::string value = text();
      const int64_t number = std::atoll(value.c_str());
      if (number < 1 && arg != "--recompute")
        fail_setup(fmt::format("{} must be a whole number >= 1 (got '{}')", arg, value));
      return number;
    };
    if (arg == "--worker") {
      is_worker = true;
    } else if (arg == "--preset") {
      worker.preset = text();
    } else if (arg == "--length") {
      worker.length = count();
    } else if (arg == "--recompute") {
      worker.recompute = count() != 0;
    } else if (arg == "--reps") {
      worker.reps = static_cast<int>(count());
    } else if (arg == "--sp-mode") {
      worker.sp_mode = text();
    } else if (arg == "--independent") {
      worker.independent = text() == "1";
    } else if (arg == "--alternate") {
      worker.alternate = text() == "1";
    } else if (arg == "--quick") {
      options.quick = true;
      options.given.push_back(arg);
    } else if (arg == "--clip-seconds") {
      options.clip_seconds = static_cast<int>(count()), clip_given = true;
      options.given.push_back(fmt::format("{} {}", arg, options.clip_seconds));
    } else if (arg == "--group") {
      options.group = count(), group_given = true;
      options.given.push_back(fmt::format("{} {}", arg, options.group));
    } else if (arg == "--answer-tokens") {
      options.answer_tokens = count();
      options.given.push_back(fmt::format("{} {}", arg, options.answer_tokens));
    } else if (arg == "--rounds") {
      options.rounds = static_cast<int>(count()), rounds_given = true;
      options.given.push_back(fmt::format("{} {}", arg, options.rounds));
    } else if (arg == "--threads") {
      options.threads = worker.threads = static_cast<int>(count());
      options.given.push_back(fmt::format("{} {}", arg, options.threads));
    } else if (arg == "--sp-length") {
      options.sp_length = count(), sp_given = true;
      options.given.push_back(fmt::format("{} {}", arg, options.sp_length));
    } else if (arg == "--memory-length") {
      options.memory_length = count(), memory_given = true;
      options.given.push_back(fmt::format("{} {}", arg, options.memory_length));
    } else if (arg == "--scored") {
      options.scored = worker.scored = count();
      options.given.push_back(fmt::format("{} {}", arg, options.scored));
    } else if (arg == "--cache") {
      options.cache = text();
    } else if (arg == "--results") {
      options.results = text();
    } else {
      fail_setup(
          "usage: bench_train_step [--quick] [--clip-seconds N] [--group G] [--answer-tokens T] [--rounds R] "
          "[--threads N] [--sp-length L] [--sp-mode M] [--memory-length L] [--scored N] [--cache DIR] "
          "[--results FILE.md] "
          "(got '" +
          arg + "')");
    }
  }
  try {
    if (is_worker) return run_worker(worker);
  } catch (const std::exception& e) {
    std::cerr << "worker error: " << e.what() << "\n";
    return 1;
  }
  if (options.quick) {
    if (!clip_given) options.clip_seconds = 2;
    if (!group_given) options.group = 2;
    if (!rounds_given) options.rounds = 1;
    if (!sp_given) options.sp_length = 4096;
    if (!memory_given) options.memory_length = 4096;
  }
  if (options.scored > 256) fail_setup("--scored must be at most 256 (the issue's figure 4)");
  fs::create_directories(options.cache);

  at::set_num_threads(options.threads);
  const std::string load_before = lvrl::bench::first_line("/proc/loadavg");
  const unsigned cores = std::thread::hardware_concurrency();
  const SteadyClock::time_point bench_start = SteadyClock::now();
  const std::string commit =
      run_command(fmt::format("git -C {} rev-parse --short HEAD 2>/dev/null", shell_quote(LVRL_SOURCE_DIR)));
  const fs::path clip = ensure_video(options.cache, options.clip_seconds);
  bool correct = true;
  json report = {{"bench", "train_step"}, {"threads", options.threads}, {"cores", cores}};
  std::string table, details;
  bool cache_met = false, compute_met = false, sp_met = false, memory_met = false, memory_time_met = false;
  try {
    // ---- Figures 1 and 2 ----
    const SteadyClock::time_point setup = SteadyClock::now();
    model::QwenVL qwen(model::QwenConfig::preset("small"));
    model::init_weights(*qwen, kWeightSeed);
    const model::TextConfig& text = qwen->config().text;
    pipeline::VisionEncoder encoder(qwen->visual, at::kFloat, at::kCPU);
    pipeline::VideoRecipe recipe;  // qwen-vl-utils' defaults, as bench_preprocess
    recipe.vision = encoder.vision_params();
    lvrl::TempDir work("lvrl-bench-train-step");
    lvrl::cache::RedisServerOptions server_options;
    server_options.dir = work.path();
    server_options.name = "bench";
    server_options.maxmemory = "1gb";
    lvrl::cache::RedisServer server(server_options);
    lvrl::cache::EmbeddingCacheOptions cache_options;
    cache_options.ns = "bench-train-step";
    lvrl::cache::EmbeddingCache cache(server.endpoint(), cache_options);
    lvrl::data::Sample sample;
    sample.id = "clip";
    sample.video = fs::canonical(clip).string();
    sample.question = "What happens in the video?";

    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& item : qwen->named_parameters()) {
      if (item.key().rfind("visual.", 0) != 0) named.emplace_back(item.key(), item.value());
    }
    trainer::OptimizerOptions optimizer_options;
    optimizer_options.lr = 1e-6;
    trainer::AdamW optimizer(named, optimizer_options);
    const std::vector<at::Tensor> parameters = language_parameters(*qwen);
    trainer::GradientOptions
        gradient_options;  // the trainer's defaults: 16384-token micro-batches, recompute
    const trainer::TokenLoss loss = ppo_loss();
    const auto mesh = sp::Mesh::create(sp::DistributedEnv::from_environment(), sp::MeshShape{},
                                       c10::Device(c10::kCPU));  // one rank

    // One step from the rows on: the batch, forward + backward, clip, AdamW.
    auto train = [&](const trainer::TrainVideo& video, StepTimes& times) {
      const trainer::TrainBatch batch =
          group_batch(qwen->config(), video, options.group, options.answer_tokens);
      optimizer.zero_grad();
      SteadyClock::time_point start = SteadyClock::now();
      const trainer::GradientResult result =
          trainer::accumulate_gradients(*qwen, batch, mesh, gradient_options, loss);
      times.gradient_s = seconds_since(start);
      start = SteadyClock::now();
      const double norm = trainer::clip_grad_norm(parameters, optimizer_options.grad_clip, nullptr);
      if (std::isfinite(norm)) optimizer.step();
      times.update_s = seconds_since(start);
      if (!std::isfinite(result.loss) || !std::isfinite(norm)) {
        std::cerr << fmt::format("WRONG: step loss {} grad norm {}\n", result.loss, norm);
        correct = false;
      }
      return result;
    };

    // Warm-up, untimed: the miss that encodes and puts the entry, and one step.
    const pipeline::VideoRows first = pipeline::get_or_encode(sample, recipe, encoder, cache);
    if (first.hit) fail_setup("the fresh cache already held the clip");
    trainer::TrainVideo cached_video{first.rows, first.grid_thw, first.second_per_grid_t};
    StepTimes warm;
    const trainer::GradientResult warm_result = train(cached_video, warm);
    const trainer::TrainBatch shape_batch =
        group_batch(qwen->config(), cached_video, options.group, options.answer_tokens);
    int64_t mm_rows = 0;  // the largest micro-batch's B·S
    for (const std::vector<int64_t>& members :
         trainer::plan_micro_batches(shape_batch, gradient_options.micro_batch_tokens)) {
      int64_t longest = 0;
      for (int64_t i : members) longest = std::max(longest, shape_batch.sequences[i].length());
      mm_rows = std::max(mm_rows, longest * static_cast<int64_t>(members.size()));
    }
    const int64_t micro_batches = warm_result.micro_batches;
    fmt::print(
        "set up in {:.1f} s (not measured): clip {} → rows [{}, {}], grid [{}, {}, {}]; G = {} answers of {} "
        "tokens, {} tokens per answer, {} micro-batches (largest {} rows); warm-up step {:.2f} s\n",
        seconds_since(setup), clip.filename().string(), first.rows.size(0), first.rows.size(1),
        first.grid_thw[0], first.grid_thw[1], first.grid_thw[2], options.group, options.answer_tokens,
        shape_batch.sequences[0].length(), micro_batches, mm_rows, warm.gradient_s + warm.update_s);
    std::fflush(stdout);

    StepTimes cached, reencoded;
    double encode_alone_s = kInfinity;
    std::vector<double> mm_best(layer_linears(text).size(), kInfinity);
    for (int r = 0; r < options.rounds; ++r) {
      const SteadyClock::time_point round_start = SteadyClock::now();
      // The anchor: the encode alone.
      SteadyClock::time_point start = SteadyClock::now();
      const Encoded alone = encode(clip.string(), recipe, encoder);
      const double encode_s = seconds_since(start);
      encode_alone_s = std::min(encode_alone_s, encode_s);
      // The step with the cache.
      StepTimes with_cache;
      start = SteadyClock::now();
      const pipeline::VideoRows hit = pipeline::get_or_encode(sample, recipe, encoder, cache);
      with_cache.rows_s = seconds_since(start);
      train({hit.rows, hit.grid_thw, hit.second_per_grid_t}, with_cache);
      with_cache.step_s = seconds_since(start);
      cached.keep_best(with_cache);
      // The step without: re-encode the video.
      StepTimes without;
      start = SteadyClock::now();
      const Encoded again = encode(clip.string(), recipe, encoder);
      without.rows_s = seconds_since(start);
      train(again.video, without);
      without.step_s = seconds_since(start);
      reencoded.keep_best(without);
      if (!hit.hit || hit.rows.sizes() != alone.rows.sizes() ||
          std::memcmp(hit.rows.data_ptr(), alone.rows.data_ptr(), alone.rows.nbytes()) != 0 ||
          !at::equal(again.rows, alone.rows)) {
        std::cerr << "WRONG: the cache hit's rows are not the encoder's\n";
        correct = false;
      }
      const std::vector<double> mm = mm_times(text, mm_rows);
      for (size_t i = 0; i < mm.size(); ++i) mm_best[i] = std::min(mm_best[i], mm[i]);
      fmt::print(
          "  round {}: {:.0f} s (encode alone {:.2f} s; step with cache {:.2f} s = get {:.3f} + fwd+bwd "
          "{:.2f} + "
          "update {:.2f}; step re-encoding {:.2f} s = encode {:.2f} + fwd+bwd {:.2f} + update {:.2f}); load "
          "average {}\n",
          r + 1, seconds_since(round_start), encode_s, with_cache.step_s, with_cache.rows_s,
          with_cache.gradient_s, with_cache.update_s, without.step_s, without.rows_s, without.gradient_s,
          without.update_s, lvrl::bench::first_line("/proc/loadavg"));
      std::fflush(stdout);
    }
    const double saving = (reencoded.step_s - cached.step_s) / encode_alone_s;
    const double phase_saving = (reencoded.rows_s - cached.rows_s) / encode_alone_s;
    cache_met = saving >= kCacheTarget;

    const StepFlops flops = step_flops(text, shape_batch);
    int64_t tokens = 0, scored = 0;
    for (const trainer::TrainSequence& sequence : shape_batch.sequences) {
      tokens += sequence.length();
      scored += sequence.response_tokens();
    }
    const double step_rate = flops.total() / cached.gradient_s / 1e9;
    double mm_flops = 0, mm_seconds = 0;
    json mm_rates;
    const std::vector<LinearShape> shapes = layer_linears(text);
    for (size_t i = 0; i < shapes.size(); ++i) {
      const double f = 2.0 * static_cast<double>(mm_rows * shapes[i].in * shapes[i].out);
      mm_flops += f;
      mm_seconds += mm_best[i];
      mm_rates[shapes[i].name] = std::round(f / mm_best[i] / 1e8) / 10;
    }
    const double mm_rate = mm_flops / mm_seconds / 1e9;
    const double compute_fraction = step_rate / mm_rate;
    compute_met = compute_fraction >= kComputeTarget;
    const double tokens_per_s = static_cast<double>(tokens) / cached.gradient_s;
    // What the step executes besides: recompute's second forward of the layers and of the LM-head chunks,
    // a third of each part's forward + backward.
    const double executed_rate = step_rate * 4 / 3;
    fmt::print("figure 1: the cache saves {:.1f}% of the encode ({:.2f} s alone); target >= {:.0f}%: {}\n",
               100 * saving, encode_alone_s, 100 * kCacheTarget, verdict(cache_met));
    fmt::print(
        "figure 2: {:.0f} tokens/s, {:.1f} GFLOP/s against at::mm {:.1f} GFLOP/s: {:.0f}%; target >= "
        "{:.0f}%: {}\n",
        tokens_per_s, step_rate, mm_rate, 100 * compute_fraction, 100 * kComputeTarget, verdict(compute_met));
    std::fflush(stdout);

    // ---- Figure 3: SP = 2 against SP = 1 ----
    WorkerSpec sp_spec;
    sp_spec.preset = "tiny";
    sp_spec.length = options.sp_length;
    sp_spec.scored = options.scored;
    sp_spec.recompute = gradient_options.recompute;
    sp_spec.threads = 1;
    sp_spec.reps = kSpReps;
    sp_spec.sp_mode = worker.sp_mode;  // --sp-mode (ulysses by default)
    WorkerSpec pair_spec = sp_spec;    // two SP = 1 copies at once: what the machine gives a second rank
    pair_spec.independent = true;
    double sp1_s = kInfinity, sp2_s = kInfinity, pair_s = kInfinity;
    WorkerRun sp1_run, sp2_run;
    for (int r = 0; r < options.rounds; ++r) {
      const SteadyClock::time_point round_start = SteadyClock::now();
      const WorkerRun one = launch(sp_spec, 1).front();
      const WorkerRun two = launch(sp_spec, 2).front();
      const WorkerRun pair = launch(pair_spec, 2).front();
      correct &= one.ran && two.ran && pair.ran;
      if (!one.ran || !two.ran || !pair.ran) break;
      sp1_s = std::min(sp1_s, one.best_s());
      sp2_s = std::min(sp2_s, two.best_s());
      pair_s = std::min(pair_s, pair.best_s());
      sp1_run = one;
      sp2_run = two;
      fmt::print(
          "  SP round {}: {:.0f} s (SP = 1 {:.2f} s, SP = 2 {:.2f} s, two SP = 1 copies at once {:.2f} s per "
          "step); load average {}\n",
          r + 1, seconds_since(round_start), one.best_s(), two.best_s(), pair.best_s(),
          lvrl::bench::first_line("/proc/loadavg"));
      std::fflush(stdout);
    }
    const double sp_speedup = sp1_s / sp2_s;
    const double capacity = 2 * sp1_s / pair_s;  // 2 on two free cores
    double sp_loss_diff = NAN, sp_norm_diff = NAN;
    if (sp1_run.ran && sp2_run.ran) {
      sp_loss_diff = relative_difference(sp2_run.report["loss"], sp1_run.report["loss"]);
      sp_norm_diff = relative_difference(sp2_run.report["grad_norm"], sp1_run.report["grad_norm"]);
      if (!(sp_loss_diff <= kSpTolerance && sp_norm_diff <= kSpTolerance)) {
        std::cerr << fmt::format(
            "WRONG: SP = 2 differs from SP = 1: loss {:.2e}, grad norm {:.2e} relative\n", sp_loss_diff,
            sp_norm_diff);
        correct = false;
      }
    }
    sp_met = sp_speedup >= kSpTarget;
    fmt::print("figure 3: SP = 2 is {:.2f}x SP = 1 at {} tokens (capacity {:.2f}x); target >= {:.1f}x: {}\n",
               sp_speedup, options.sp_length, capacity, kSpTarget, verdict(sp_met));
    std::fflush(stdout);

    // ---- Figure 4: recompute on against off ----
    WorkerSpec memory_spec;
    memory_spec.preset = "small";
    memory_spec.length = options.memory_length;
    memory_spec.scored = options.scored;
    memory_spec.threads = options.threads;
    memory_spec.reps = kMemoryReps;
    memory_spec.alternate = true;
    const std::vector<WorkerRun> memory_runs = launch(memory_spec, 1);
    const WorkerRun& plain = memory_runs[0];
    const WorkerRun& recomputed = memory_runs[1];
    correct &= plain.ran && recomputed.ran;
    double memory_ratio = NAN, tensor_ratio = NAN, memory_time_ratio = NAN, recompute_norm_diff = NAN;
    bool same_loss = false;
    if (plain.ran && recomputed.ran) {
      memory_ratio = recomputed.report["growth"].get<double>() / plain.report["growth"].get<double>();
      tensor_ratio =
          recomputed.report["tensor_peak"].get<double>() / plain.report["tensor_peak"].get<double>();
      memory_time_ratio = recomputed.best_s() / plain.best_s();
      same_loss = recomputed.report["loss"].get<double>() == plain.report["loss"].get<double>();
      recompute_norm_diff = relative_difference(recomputed.report["grad_norm"], plain.report["grad_norm"]);
      if (!same_loss || !(recompute_norm_diff <= kRecomputeGradTolerance)) {
        std::cerr << fmt::format(
            "WRONG: recompute changes the step: loss {} against {}, grad norm {:.2e} relative\n",
            recomputed.report["loss"].get<double>(), plain.report["loss"].get<double>(), recompute_norm_diff);
        correct = false;
      }
    }
    memory_met = memory_ratio <= kMemoryTarget;
    memory_time_met = memory_time_ratio <= kMemoryTimeTarget;
    fmt::print(
        "figure 4: recompute's peak growth {:.2f}x, time {:.2f}x of without; targets <= {:.1f}x: {}, <= "
        "{:.1f}x: {}\n",
        memory_ratio, memory_time_ratio, kMemoryTarget, verdict(memory_met), kMemoryTimeTarget,
        verdict(memory_time_met));

    // ---- Report ----
    auto rounded = [](const WorkerRun& run, const char* field) {  // "a / b", two decimals
      if (!run.ran || !run.report.contains(field)) return std::string("—");
      std::string out;
      for (double value : run.report[field]) out += fmt::format("{}{:.2f}", out.empty() ? "" : " / ", value);
      return out;
    };
    auto growth_mib = [](const WorkerRun& run, const char* field) {
      return run.ran ? fmt::format("{:.0f}", mib(run.report[field].get<double>())) : std::string("—");
    };
    table = fmt::format(
        "| figure | measured | anchor | ratio | target |\n|---|---|---|---|---|\n"
        "| 1. RL step, `small`, G = {} × {} tokens on a {} s clip ({} video rows) | with the cache {:.2f} s "
        "(get {:.3f} + fwd+bwd {:.2f} + clip & AdamW {:.2f}); re-encoding {:.2f} s (encode {:.2f} + fwd+bwd "
        "{:.2f} + {:.2f}) | encode alone {:.2f} s | saves **{:.1f}%** of the encode | ≥ {:.0f}%: {} |\n"
        "| 2. fwd+bwd of that step | {:.0f} tokens/s, {:.1f} GFLOP/s ({:.1f} GFLOP in {:.2f} s) | at::mm "
        "{:.1f} GFLOP/s ({} rows) | **{:.0f}%** | ≥ {:.0f}%: {} |\n"
        "| 3. fwd+bwd, `tiny`, {} tokens | SP = 2 (2 processes × 1 thread, {}): {:.2f} s | SP = 1 (1 "
        "thread): {:.2f} s | **{:.2f}×** (capacity {:.2f}×) | ≥ {:.1f}×: {} |\n"
        "| 4. fwd+bwd, `small`, {} tokens, {} scored | recompute: peak growth {} MiB, {:.2f} s | without: "
        "{} MiB, {:.2f} s | memory **{:.2f}×**, time **{:.2f}×** | ≤ {:.1f}×: {}; ≤ {:.1f}×: {} |\n",
        options.group, options.answer_tokens, options.clip_seconds, first.rows.size(0), cached.step_s,
        cached.rows_s, cached.gradient_s, cached.update_s, reencoded.step_s, reencoded.rows_s,
        reencoded.gradient_s, reencoded.update_s, encode_alone_s, 100 * saving, 100 * kCacheTarget,
        verdict(cache_met), tokens_per_s, step_rate, flops.total() / 1e9, cached.gradient_s, mm_rate, mm_rows,
        100 * compute_fraction, 100 * kComputeTarget, verdict(compute_met), options.sp_length, worker.sp_mode,
        sp2_s, sp1_s, sp_speedup, capacity, kSpTarget, verdict(sp_met), options.memory_length, options.scored,
        growth_mib(recomputed, "growth"), recomputed.best_s(), growth_mib(plain, "growth"), plain.best_s(),
        memory_ratio, memory_time_ratio, kMemoryTarget, verdict(memory_met), kMemoryTimeTarget,
        verdict(memory_time_met));
    details = fmt::format(
        "Figure 1: the rows' own saving ((encode in the step − get) / encode alone) is {:.1f}%; the get "
        "(get_or_encode's hit: hash the file, read the entry over the unix socket) {:.4f} s for [{}, {}] "
        "float32 "
        "({:.1f} MB). Step: {} tokens ({} answers × {}), {} scored, {} micro-batch(es) of ≤ {} tokens, "
        "recompute on. Figure 2 FLOPs: linear {:.1f}, attention {:.1f}, LM head {:.1f} GFLOP; with "
        "recompute's "
        "second forward counted too (4/3 of each), {:.1f} GFLOP/s executed ({:.0f}% of at::mm); at::mm "
        "GFLOP/s "
        "per shape: {}. Figure 3: SP = 1 loss {}, SP = 2 {} ({:.1e} relative), gradient norms {:.1e} "
        "relative; "
        "recompute on as in the trainer. Capacity: two SP = 1 copies run at once (two processes, DP = 2, "
        "each "
        "training the whole batch) took {:.2f} s per step against {:.2f} s alone: two ranks had {:.2f}× the "
        "throughput of one during the run (capacity; 2 on two free cores); SP = 2's speed-up is {:.0f}% of "
        "it. Per rank (last round, best step): SP = 2 wall {} s, CPU {} s (Gloo threads included); SP = 1 "
        "CPU "
        "{} s; Ulysses gives each rank a contiguous half, so the 256 scored rows (the LM head's work) all "
        "sit on "
        "the last rank. Figure 4: allocator peak of large tensors {} MiB with recompute, {} "
        "MiB "
        "without ({:.2f}×); baseline RSS {} / {} MiB; VmHWM reset: {}; loss {} (bit-identical: {}), gradient "
        "norms {:.1e} relative.",
        100 * phase_saving, cached.rows_s, first.rows.size(0), first.rows.size(1),
        static_cast<double>(first.rows.nbytes()) / 1e6, tokens, options.group,
        shape_batch.sequences[0].length(), scored, micro_batches, gradient_options.micro_batch_tokens,
        flops.linear / 1e9, flops.attention / 1e9, flops.head / 1e9, executed_rate,
        100 * executed_rate / mm_rate, mm_rates.dump(), sp1_run.ran ? sp1_run.report["loss"].dump() : "—",
        sp2_run.ran ? sp2_run.report["loss"].dump() : "—", sp_loss_diff, sp_norm_diff, pair_s, sp1_s,
        capacity, 100 * sp_speedup / capacity, rounded(sp2_run, "rank_times"), rounded(sp2_run, "rank_cpu"),
        rounded(sp1_run, "rank_cpu"), growth_mib(recomputed, "tensor_peak"), growth_mib(plain, "tensor_peak"),
        tensor_ratio, growth_mib(recomputed, "baseline_rss"), growth_mib(plain, "baseline_rss"),
        recomputed.ran && recomputed.report["peak_reset"].get<bool>() ? "yes" : "no",
        recomputed.ran ? recomputed.report["loss"].dump() : "—", same_loss ? "yes" : "no",
        recompute_norm_diff);
    std::cout << "\n" << table << "\n" << details << "\n";
    report.update({{"clip_seconds", options.clip_seconds},
                   {"group", options.group},
                   {"answer_tokens", options.answer_tokens},
                   {"video_rows", first.rows.size(0)},
                   {"rounds", options.rounds},
                   {"encode_alone_s", encode_alone_s},
                   {"cache_step_s", cached.step_s},
                   {"cache_get_s", cached.rows_s},
                   {"reencode_step_s", reencoded.step_s},
                   {"reencode_rows_s", reencoded.rows_s},
                   {"gradient_s", cached.gradient_s},
                   {"cache_saving", saving},
                   {"tokens", tokens},
                   {"tokens_per_s", tokens_per_s},
                   {"step_gflop", flops.total() / 1e9},
                   {"step_gflop_s", step_rate},
                   {"mm_gflop_s", mm_rate},
                   {"mm_rows", mm_rows},
                   {"compute_fraction", compute_fraction},
                   {"executed_gflop_s", executed_rate},
                   {"sp_length", options.sp_length},
                   {"sp1_s", sp1_s},
                   {"sp2_s", sp2_s},
                   {"sp_speedup", sp_speedup},
                   {"sp_pair_s", pair_s},
                   {"capacity", capacity},
                   {"memory_length", options.memory_length},
                   {"scored", options.scored},
                   {"memory_growth_recompute", recomputed.ran ? recomputed.report["growth"] : json(nullptr)},
                   {"memory_growth_plain", plain.ran ? plain.report["growth"] : json(nullptr)},
                   {"memory_ratio", memory_ratio},
                   {"tensor_peak_ratio", tensor_ratio},
                   {"memory_time_ratio", memory_time_ratio},
                   {"targets_met",
                    {{"cache", cache_met},
                     {"compute", compute_met},
                     {"sp", sp_met},
                     {"memory", memory_met},
                     {"memory_time", memory_time_met}}}});
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
    std::string flags;
    for (const std::string& flag : options.given) flags += " " + flag;
    const std::string section = fmt::format(
        "## train_step\n\n"
        "`{}build/bench/bench_train_step{} --results bench/RESULTS.md`, {}, {}, {} cores, commit {}, "
        "`at::set_num_threads({})` for figures 1, 2 and 4, one thread per rank for figure 3, OpenBLAS "
        "kernels "
        "{}; load average {} before, {} after; the whole run took {:.0f} s.\n\n"
        "The trainer's step (`accumulate_gradients`, `clip_grad_norm`, `AdamW`), float32, `init_weights` "
        "weights, random answer ids; PPO-clip loss with the trainer's defaults but no KL term (no reference "
        "model), token-mean, 16384-token micro-batches, recompute on (figure 4 compares it with off). "
        "Figures 1 and 2: {} rounds after an untimed warm-up step, each figure its best round; figure 3: {} "
        "rounds of three launches (SP = 1, SP = 2, two SP = 1 copies at once), each launch the best of {} "
        "steps; figure 4: one process alternating recompute off and on, {} steps each, every step from its "
        "own baseline with the allocator's kept blocks released (largest growth, best time). FLOPs (model "
        "FLOPs, "
        "recompute's second forward not counted): 6·tokens·P_linear + Σ 6·L·H·Dh·S² + 6·scored·V·D. Peak "
        "memory: VmHWM growth over a baseline after the model and batch exist (RSS high-water).\n\n{}\n{}\n\n"
        "Results: {}.\n",
        lvrl::bench::environment_prefix(), flags, lvrl::bench::utc_now(), lvrl::bench::cpu_model(), cores,
        commit.empty() ? "unknown" : commit, options.threads,
        lvrl::bench::blas_core().empty() ? "none" : lvrl::bench::blas_core(), load_before, load_after,
        total_s, options.rounds, options.rounds, kSpReps, kMemoryReps, table, details,
        correct ? "verified" : "WRONG");
    lvrl::bench::replace_results_section(options.results, "## train_step", section);
    fmt::print("wrote {}\n", options.results);
  }
  std::cout << report.dump() << std::endl;
  return correct ? 0 : 1;
}
