// bench_sp_attention: sequence-parallel attention (sp/sp_attention.h) on CPU with Gloo, one intra-op
// thread per rank, decoder-layer shapes (B = 1, H = 8, H_kv = 2, D = 64, float32, causal):
//
//   1. bytes  — every mode at P = 2 and 4 (hybrid: U = R = 2) on a short sequence L_b: the bytes each rank
//               sent (comm.h's counter) against docs/sp.md's closed form and expected_bytes(),
//               within 1% (a miss exits 1), and out / dq / dk / dv against the P = 1 run (≤ 1e-5
//               relative), which itself is checked against the same kernel in float64.
//   2. time   — "same total work": one global length L_t at P = 1 (the anchor: the local blockwise
//               kernel alone) and at P = 2 / 4 for every mode, each run's step time the slowest rank's
//               fwd+bwd; anchor and SP runs alternate round by round (best of the rounds), so load from
//               other jobs on this shared machine hits both. Speed-up = anchor / SP; zigzag target ≥ 1.6×
//               at P = 2. P = 4 oversubscribes 2 cores: reported, not judged. A second anchor runs two
//               copies of the P = 1 run at once (DP = 2, SP = 1): their throughput against one alone is the
//               capacity the machine had for a second rank during the run (2 on free cores). Each rank's
//               CPU seconds over the step give the work split (anchor CPU / busiest rank's CPU).
//   3. memory — L_m = 64k at P = 1, 2, 4 (zigzag; --memory-modes adds ulysses / ring): the peak RSS growth
//               of each rank over its baseline (VmRSS after LibTorch start-up and the rendezvous, before
//               q/k/v exist; VmHWM reset there through /proc/self/clear_refs), the largest rank's against
//               1.2 × the P = 1 growth / P. Results checked against the P = 1 run at L_m.
//   4. largest L under a per-rank cap (default 2 GiB of growth): computed from the per-token slope of
//               the zigzag growth between L_t and L_m at each P (a run at the limit would take hours at
//               P = 1: attention work grows as L²); the L_b runs check that the growth is linear.
//
// Each run is P fresh processes: this executable re-executed through sp/rank_run.h (fork + exec, a hidden
// --worker flag), the way `lvrl sp check` and the multi-rank tests start ranks: a FileStore rendezvous in
// the run's own directory, rank 0's report coming back as its rank result. Every rank draws its own rows of
// q, k, v and dout from generators seeded per block of global tokens, so no rank ever holds a full tensor
// (which would swamp its memory figure) and every P sees the same inputs. Ranks all-gather (times,
// peak growth, bytes) to rank 0, which reports to the parent.
//
//   bench_sp_attention [--quick] [--bytes-length L_b] [--time-length L_t] [--memory-length L_m]
//                      [--memory-modes zigzag,ulysses,ring] [--rounds N] [--cap-gib G] [--results FILE]
// Defaults L_b = 4k, L_t = 8k, L_m = 64k, 3 rounds: about 10 minutes on 2 idle cores, most of it the
// single-rank 64k run. --quick: 2k / 4k / 8k, one round (about a minute). Exit 1 when a result is wrong
// or a byte count misses its formula; targets print met / MISSED and exit 0.
#include "sp/sp_attention.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/autograd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "core/clock.h"
#include "core/cpu_allocator.h"
#include "core/temp_dir.h"
#include "core/tensor_compare.h"
#include "model/attention.h"
#include "sp/comm.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "sp/rank_run.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace lvrl::sp;
using lvrl::max_relative_difference;

namespace {
using Clock = std::chrono::steady_clock;

// Decoder-layer attention shapes (a Qwen2.5-style GQA layer scaled to a CPU).
constexpr int64_t kHeads = 8, kKvHeads = 2, kHeadDim = 64, kElementBytes = 4;
constexpr int64_t kBlock = 256;       // query/key block of the local kernel
constexpr int64_t kDrawBlock = 1024;  // tokens per seeded generator when drawing inputs
constexpr uint64_t kSeed = 20261127;
constexpr double kTolerance = 1e-5;  // float32, as `lvrl sp check`
constexpr double kBytesTolerance = 0.01;
constexpr double kMemoryTarget = 1.2;   // peak growth per rank ≤ 1.2 × single / P
constexpr double kSpeedupTarget = 1.6;  // zigzag fwd+bwd at P = 2 vs P = 1

using lvrl::seconds_since;

double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string blas_core() {
  using CoreName = char* (*)();
  auto* name = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return name != nullptr ? std::string(name()) : std::string("not OpenBLAS");
}

std::string load_average() {
  return lvrl::bench::first_line("/proc/loadavg");
}

// ---- One run: what the parent asks for, what rank 0 reports ------------------------------------------

struct RunSpec {
  std::string mode = "ulysses";
  int nproc = 1, ulysses = 1, ring = 1;
  int64_t length = 0;
  int reps = 1;
  std::string anchor;  // "" | save (P = 1: write out/dq/dk/dv) | check (compare with the saved run)
  std::string anchor_file;
  bool reference = false;  // P = 1: also check against the kernel in float64

  // U·R < P: P independent copies of the single-rank run at once (DP = P, SP = 1), the machine's capacity.
  bool independent() const { return ulysses * ring < nproc; }
  std::string label() const {
    if (independent()) return fmt::format("{} x single", nproc);
    return mode == "hybrid" ? fmt::format("hybrid U={} R={}", ulysses, ring) : mode;
  }
};

// Degrees of a mode on P ranks (hybrid: U = 2 when P is even).
RunSpec make_spec(const std::string& mode, int nproc, int64_t length) {
  RunSpec spec;
  spec.mode = mode;
  spec.nproc = nproc;
  spec.length = length;
  if (mode == "ulysses") spec.ulysses = nproc;
  if (mode == "ring" || mode == "zigzag") spec.ring = nproc;
  if (mode == "hybrid") {
    spec.ulysses = 2;
    spec.ring = nproc / 2;
  }
  return spec;
}

struct RankStats {
  std::vector<double> times;      // fwd+bwd wall seconds per repetition
  std::vector<double> cpu_times;  // the process's CPU seconds over the same span (Gloo threads included)
  int64_t baseline_rss = 0, peak_growth = 0, bytes_sent = 0, expected_bytes = 0;
  int64_t tensor_peak = 0;  // the CPU allocator's peak of large tensors held at once (core/cpu_allocator.h)
};

struct RunResult {
  RunSpec spec;
  bool ran = false;  // the launch exited 0 and rank 0 wrote its report
  std::vector<RankStats> ranks;
  double max_rel_err = NAN;  // against the anchor (or the float64 kernel); NaN when not compared
  bool finite = false;
  bool peak_reset = false;
  std::string cpu_allocator;  // "caching" or "system" (LVRL_CPU_ALLOCATOR)
  int64_t local_length = 0;

  double step_time(size_t rep) const {  // the slowest rank's time of one repetition
    double t = 0;
    for (const RankStats& r : ranks) t = std::max(t, r.times.at(rep));
    return t;
  }
  double best_time() const {
    double best = INFINITY;
    for (size_t i = 0; i < ranks.front().times.size(); ++i) best = std::min(best, step_time(i));
    return best;
  }
  double best_cpu_time() const {  // the busiest rank's CPU seconds, best repetition
    double best = INFINITY;
    for (size_t i = 0; i < ranks.front().cpu_times.size(); ++i) {
      double t = 0;
      for (const RankStats& r : ranks) t = std::max(t, r.cpu_times.at(i));
      best = std::min(best, t);
    }
    return best;
  }
  int64_t max_growth() const {
    int64_t g = 0;
    for (const RankStats& r : ranks) g = std::max(g, r.peak_growth);
    return g;
  }
  int64_t max_tensor_peak() const {
    int64_t g = 0;
    for (const RankStats& r : ranks) g = std::max(g, r.tensor_peak);
    return g;
  }
};

// ---- Worker (one rank) -------------------------------------------------------------------------------

// Rows `token_indices` ([l] int64, global positions; ≥ length = padding, left 0) of a [1, length, heads, D]
// float32 tensor whose block b of kDrawBlock tokens comes from a generator seeded (seed, b).
// A projection weight [heads·D, H·D] (as Linear stores it), N(0, 1/(H·D)) so projected rows keep unit
// variance; the same on every rank.
at::Tensor projection(int64_t heads, uint64_t seed) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({heads * kHeadDim, kHeads * kHeadDim}, generator, at::TensorOptions().dtype(at::kFloat))
      .div_(std::sqrt(static_cast<double>(kHeads * kHeadDim)));
}

at::Tensor draw_rows(const at::Tensor& token_indices, int64_t length, int64_t heads, uint64_t seed) {
  const int64_t local = token_indices.size(0);
  const int64_t* index = token_indices.data_ptr<int64_t>();
  at::Tensor rows = at::zeros({1, local, heads, kHeadDim}, at::kFloat);
  int64_t cached_block = -1;
  at::Tensor block_rows;  // [kDrawBlock, heads, D]
  for (int64_t i = 0; i < local;) {
    const int64_t token = index[i];
    if (token >= length) {
      ++i;
      continue;
    }
    const int64_t block = token / kDrawBlock;
    int64_t j = i + 1;  // a run of consecutive tokens inside one block
    while (j < local && index[j] == token + (j - i) && index[j] < length && index[j] / kDrawBlock == block)
      ++j;
    if (block != cached_block) {
      at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ULL + block);
      block_rows = at::randn({kDrawBlock, heads, kHeadDim}, generator, at::TensorOptions().dtype(at::kFloat));
      cached_block = block;
    }
    rows[0].narrow(0, i, j - i).copy_(block_rows.narrow(0, token - block * kDrawBlock, j - i));
    i = j;
  }
  return rows;
}

void write_raw(std::ofstream& out, const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

at::Tensor read_raw(std::ifstream& in, at::IntArrayRef sizes) {
  at::Tensor t = at::empty(sizes, at::kFloat);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  if (!in) throw std::runtime_error("anchor file too short");
  return t;
}

int run_worker(const RunSpec& spec) {
  at::set_num_threads(1);
  const DistributedEnv env = DistributedEnv::from_environment();
  const auto mesh =
      Mesh::create(env, MeshShape{spec.ulysses * spec.ring, spec.ulysses, spec.ring}, c10::Device(c10::kCPU));
  const SpMode mode = parse_sp_mode(spec.mode);
  const SequenceLayout layout =
      SequenceLayout::make(mode, spec.ulysses, spec.ring, spec.length, /*causal=*/true);
  SequenceParallelAttention attention(mesh, mode, lvrl::model::BlockwiseOptions{kBlock, kBlock});
  attention.set_layout(layout);
  lvrl::model::AttentionSpec attention_spec;
  attention_spec.mask = lvrl::model::MaskKind::Causal;
  auto barrier = [&] {
    at::Tensor token = at::zeros({1}, at::kFloat);
    all_reduce_sum(mesh->world(), token);
  };

  barrier();  // every rank past start-up before the baseline
  const int64_t baseline = lvrl::bench::status_bytes("VmRSS");
  const bool peak_reset = lvrl::bench::reset_peak_rss();
  lvrl::cpu_allocator().reset_peak();
  const int64_t baseline_live = lvrl::cpu_allocator().stats().live_bytes;
  const int rank = mesh->sp_rank();
  const at::Tensor indices = layout.token_indices(rank);
  // As in a decoder layer, q, k and v are projections of the hidden states x (the leaf), so nothing
  // holds their sequence-layout tensors but the attention itself (Ulysses frees them after its
  // all-to-all; a leaf q/k/v would keep a copy no model keeps). dq/dk/dv are caught by hooks.
  const at::Tensor x = draw_rows(indices, spec.length, kHeads, kSeed + 0).view({1, -1, kHeads * kHeadDim});
  x.requires_grad_(true);
  const at::Tensor w_q = projection(kHeads, kSeed + 1), w_k = projection(kKvHeads, kSeed + 2),
                   w_v = projection(kKvHeads, kSeed + 4);
  auto project = [&](const at::Tensor& w, int64_t heads) {
    return at::linear(x, w).view({1, -1, heads, kHeadDim});
  };
  const at::Tensor dout = draw_rows(indices, spec.length, kHeads, kSeed + 3);

  std::vector<double> times, cpu_times;
  int64_t sent = 0;
  at::Tensor out, dq, dk, dv;
  for (int rep = 0; rep < spec.reps; ++rep) {
    x.mutable_grad().reset();
    out.reset(), dq.reset(), dk.reset(), dv.reset();
    barrier();
    reset_bytes_sent();
    const Clock::time_point start = Clock::now();
    const double cpu_start = process_cpu_seconds();
    {
      at::Tensor q = project(w_q, kHeads), k = project(w_k, kKvHeads), v = project(w_v, kKvHeads);
      q.register_hook([&dq](const at::Tensor& g) { dq = g; });
      k.register_hook([&dk](const at::Tensor& g) { dk = g; });
      v.register_hook([&dv](const at::Tensor& g) { dv = g; });
      out = attention.forward(q, k, v, attention_spec).out;
    }
    torch::autograd::backward({out}, {dout});
    times.push_back(seconds_since(start));
    cpu_times.push_back(process_cpu_seconds() - cpu_start);
    sent = bytes_sent();
  }
  const int64_t hwm = lvrl::bench::status_bytes("VmHWM");
  const int64_t growth = hwm - baseline;
  // Large tensors' peak as the allocator saw it (bytes held at once); 0 under LVRL_CPU_ALLOCATOR=system.
  const int64_t tensor_peak =
      lvrl::cpu_allocator_installed() ? lvrl::cpu_allocator().stats().peak_live_bytes - baseline_live : 0;
  const int64_t expected = attention.expected_bytes(1, kHeads, kKvHeads, kHeadDim, kElementBytes);

  // Everything below is bookkeeping, after the peak was read.
  std::vector<double> row = {static_cast<double>(baseline), static_cast<double>(growth),
                             static_cast<double>(sent), static_cast<double>(expected),
                             static_cast<double>(tensor_peak)};
  row.insert(row.end(), times.begin(), times.end());
  row.insert(row.end(), cpu_times.begin(), cpu_times.end());
  const at::Tensor stats =
      all_gather_cat(mesh->world(), at::tensor(row, at::kDouble), 0).view({spec.nproc, -1});
  bool finite = true;
  for (const at::Tensor& x : {out, dq, dk, dv}) finite &= x.detach().isfinite().all().item<bool>();
  at::Tensor finite_all = at::tensor({finite ? 0.0f : 1.0f});
  all_reduce_sum(mesh->world(), finite_all);
  finite = finite_all.item<float>() == 0;

  double max_rel_err = NAN;
  if (spec.anchor == "check" || spec.anchor == "save") {
    auto full = [&](const at::Tensor& local) {  // [1, L, h, D] on every rank
      if (layout.ranks() == 1) return unshard({local.detach()}, 1, layout);
      return unshard(all_gather_cat(mesh->sp(), local.detach().contiguous(), 1).chunk(layout.ranks(), 1), 1,
                     layout);
    };
    const std::vector<at::Tensor> results = {full(out), full(dq), full(dk), full(dv)};
    const std::vector<int64_t> heads = {kHeads, kHeads, kKvHeads, kKvHeads};
    if (rank == 0 && spec.anchor == "save") {
      std::ofstream file(spec.anchor_file, std::ios::binary);
      for (const at::Tensor& x : results) write_raw(file, x);
      if (!file) throw std::runtime_error("cannot write " + spec.anchor_file);
    }
    if (rank == 0 && spec.anchor == "check") {
      std::ifstream file(spec.anchor_file, std::ios::binary);
      max_rel_err = 0;
      for (size_t i = 0; i < results.size(); ++i) {
        const at::Tensor anchor = read_raw(file, {1, spec.length, heads[i], kHeadDim});
        max_rel_err = std::max(max_rel_err, max_relative_difference(results[i], anchor));
      }
    }
    if (rank == 0 && spec.reference) {  // the kernel in float64 on the same inputs
      at::NoGradGuard no_grad;
      const at::Tensor q = project(w_q, kHeads), k = project(w_k, kKvHeads), v = project(w_v, kKvHeads);
      auto f64 = [](const at::Tensor& t) { return t.detach().to(at::kDouble); };
      const auto forward =
          lvrl::model::blockwise_attention_forward(f64(q), f64(k), f64(v), attention_spec, {kBlock, kBlock});
      const auto grads = lvrl::model::blockwise_attention_backward(f64(q), f64(k), f64(v), forward.out,
                                                                   forward.lse, f64(dout), at::Tensor(),
                                                                   attention_spec, {kBlock, kBlock});
      max_rel_err = std::max(
          {max_relative_difference(results[0], forward.out), max_relative_difference(results[1], grads.dq),
           max_relative_difference(results[2], grads.dk), max_relative_difference(results[3], grads.dv)});
    }
  }
  if (rank != 0) return 0;
  json report = {{"finite", finite},
                 {"cpu_allocator", lvrl::cpu_allocator_installed() ? "caching" : "system"},
                 {"peak_reset", peak_reset},
                 {"local_length", layout.local_length()},
                 {"max_rel_err", std::isnan(max_rel_err) ? json(nullptr) : json(max_rel_err)}};
  for (int64_t r = 0; r < stats.size(0); ++r) {
    const at::Tensor s = stats[r];
    std::vector<double> rank_times, rank_cpu_times;
    for (int i = 0; i < spec.reps; ++i) {
      rank_times.push_back(s[5 + i].item<double>());
      rank_cpu_times.push_back(s[5 + spec.reps + i].item<double>());
    }
    report["ranks"].push_back({{"baseline_rss", s[0].item<int64_t>()},
                               {"peak_growth", s[1].item<int64_t>()},
                               {"bytes_sent", s[2].item<int64_t>()},
                               {"expected_bytes", s[3].item<int64_t>()},
                               {"tensor_peak", s[4].item<int64_t>()},
                               {"times", rank_times},
                               {"cpu_times", rank_cpu_times}});
  }
  write_rank_result(report.dump());
  return 0;
}

// ---- Parent ------------------------------------------------------------------------------------------

class Runner {
 public:
  explicit Runner(std::string dir) : dir_(std::move(dir)) {}

  RunResult run(const RunSpec& spec) {
    RunResult result;
    result.spec = spec;
    RankRunOptions ranks;
    ranks.nproc = spec.nproc;
    ranks.worker_args = {"--worker",
                         "--mode",
                         spec.mode,
                         "--nproc",
                         std::to_string(spec.nproc),
                         "--ulysses",
                         std::to_string(spec.ulysses),
                         "--ring",
                         std::to_string(spec.ring),
                         "--length",
                         std::to_string(spec.length),
                         "--reps",
                         std::to_string(spec.reps)};
    if (!spec.anchor.empty()) {
      ranks.worker_args.insert(ranks.worker_args.end(),
                               {"--anchor", spec.anchor, "--anchor-file", spec.anchor_file});
    }
    if (spec.reference) ranks.worker_args.push_back("--reference");
    const Clock::time_point start = Clock::now();
    const RankRunResult ran = run_on_ranks(ranks);
    const int code = ran.exit_code;
    const std::string& report = ran.results.front();
    if (code != 0 || report.empty()) {
      std::cerr << fmt::format("WRONG: {} P={} L={}: the ranks exited {} without a report\n", spec.label(),
                               spec.nproc, spec.length, code);
      return result;
    }
    const json parsed = json::parse(report);
    result.ran = true;
    result.finite = parsed["finite"].get<bool>();
    result.peak_reset = parsed["peak_reset"].get<bool>();
    result.cpu_allocator = parsed["cpu_allocator"].get<std::string>();
    result.local_length = parsed["local_length"].get<int64_t>();
    if (!parsed["max_rel_err"].is_null()) result.max_rel_err = parsed["max_rel_err"].get<double>();
    for (const json& r : parsed["ranks"]) {
      RankStats stats;
      stats.baseline_rss = r["baseline_rss"].get<int64_t>();
      stats.peak_growth = r["peak_growth"].get<int64_t>();
      stats.bytes_sent = r["bytes_sent"].get<int64_t>();
      stats.expected_bytes = r["expected_bytes"].get<int64_t>();
      stats.tensor_peak = r["tensor_peak"].get<int64_t>();
      stats.times = r["times"].get<std::vector<double>>();
      stats.cpu_times = r["cpu_times"].get<std::vector<double>>();
      result.ranks.push_back(stats);
    }
    std::cerr << fmt::format(
        "  {:<16} P={} L={:>6}: step {:.2f} s (cpu {:.2f} s), growth {:.0f} MiB/rank (max), {:.1f} s wall, "
        "load {}\n",
        spec.label(), spec.nproc, spec.length, result.best_time(), result.best_cpu_time(),
        result.max_growth() / 1048576.0, seconds_since(start), load_average().substr(0, 4));
    return result;
  }

  std::string anchor_path(int64_t length) const { return fmt::format("{}/anchor-{}.bin", dir_, length); }

 private:
  std::string dir_;
};

// docs/sp.md's closed form, fwd + bwd, for even heads: Ulysses 2·(U−1)/U·(2d + 2d_kv)·N/P; ring
// (R−1) hops of K/V (2·N·d_kv/P) each way and R hops of fp32 dK/dV back. d_kv becomes U·d_h when the
// H_kv < U KV heads are replicated (each rank receives the one its query heads read).
int64_t note_formula_bytes(const RunSpec& spec, int64_t local) {
  const int U = spec.ulysses, R = spec.ring;
  const double d = kHeads * kHeadDim, d_kv = kHeadDim * std::max<int64_t>(kKvHeads, U);
  const double ulysses = 2.0 * (U - 1) / U * (2 * d + 2 * d_kv) * local * kElementBytes;
  const double ring = R > 1 ? 2.0 * local * d_kv * ((R - 1) * 2.0 * kElementBytes + R * 4.0) : 0;
  return static_cast<int64_t>(std::llround(ulysses + ring));
}

std::string mib(int64_t bytes) {
  return fmt::format("{:.0f}", bytes / 1048576.0);
}

struct Options {
  bool quick = false;
  int64_t bytes_length = 4096, time_length = 8192, memory_length = 65536;
  int rounds = 3;
  std::vector<std::string> memory_modes = {"zigzag"};  // SP modes measured at L_m besides P = 1
  double cap_gib = 2;
  std::string results;
};

int run_parent(const Options& options, const std::string& command_line) {
  const lvrl::TempDir dir("lvrl-bench-sp");  // the anchor runs' outputs
  Runner runner(dir.path());
  const std::string load_before = load_average();
  const std::string started = lvrl::bench::utc_now();
  const Clock::time_point wall_start = Clock::now();
  bool correct = true;
  std::vector<std::string> problems;
  // `compared`: the run was checked against the anchor (or the float64 kernel) and must be within kTolerance.
  auto check_result = [&](const RunResult& r, bool compared) {
    bool ok = r.ran && r.finite;
    if (compared) ok &= r.max_rel_err <= kTolerance;  // NaN fails
    if (!ok) {
      correct = false;
      problems.push_back(fmt::format("{} P={} L={}: ran {}, finite {}, max rel err {:.3g}", r.spec.label(),
                                     r.spec.nproc, r.spec.length, r.ran, r.finite, r.max_rel_err));
      std::cerr << "WRONG: " << problems.back() << "\n";
    }
  };
  std::cerr << fmt::format(
      "bench_sp_attention: H={} H_kv={} D={} float32 causal, block {}; BLAS {}; load {}\n", kHeads, kKvHeads,
      kHeadDim, kBlock, blas_core(), load_before);

  // ---- 1. bytes and correctness ----
  std::cerr << "phase 1: bytes sent and correctness, L = " << options.bytes_length << "\n";
  RunSpec bytes_anchor = make_spec("ulysses", 1, options.bytes_length);
  bytes_anchor.anchor = "save";
  bytes_anchor.anchor_file = runner.anchor_path(options.bytes_length);
  bytes_anchor.reference = true;
  const RunResult bytes_anchor_result = runner.run(bytes_anchor);
  check_result(bytes_anchor_result, true);
  struct BytesRow {
    RunResult result;
    int64_t note = 0;
    double worst_vs_note = 0, worst_vs_expected = 0;
  };
  std::vector<BytesRow> bytes_rows;
  bool bytes_ok = true;
  for (int nproc : {2, 4}) {
    for (const std::string mode : {"ulysses", "ring", "zigzag", "hybrid"}) {
      if (mode == "hybrid" && nproc < 4) continue;
      RunSpec spec = make_spec(mode, nproc, options.bytes_length);
      spec.anchor = "check";
      spec.anchor_file = bytes_anchor.anchor_file;
      BytesRow row;
      row.result = runner.run(spec);
      check_result(row.result, true);
      if (!row.result.ran) continue;
      row.note = note_formula_bytes(spec, row.result.local_length);
      for (const RankStats& r : row.result.ranks) {
        const double vs_note = std::abs(static_cast<double>(r.bytes_sent - row.note)) / row.note;
        const double vs_expected =
            std::abs(static_cast<double>(r.bytes_sent - r.expected_bytes)) / r.expected_bytes;
        row.worst_vs_note = std::max(row.worst_vs_note, vs_note);
        row.worst_vs_expected = std::max(row.worst_vs_expected, vs_expected);
      }
      if (!(row.worst_vs_note <= kBytesTolerance && row.worst_vs_expected <= kBytesTolerance)) {
        bytes_ok = false;
        problems.push_back(
            fmt::format("{} P={}: bytes off the formula by {:.2f}% (note) / {:.2f}% (expected_bytes)",
                        spec.label(), nproc, 100 * row.worst_vs_note, 100 * row.worst_vs_expected));
        std::cerr << "WRONG: " << problems.back() << "\n";
      }
      bytes_rows.push_back(row);
    }
  }

  // ---- 2. time: same total work at P = 1, 2, 4 ----
  std::cerr << "phase 2: fwd+bwd time, L = " << options.time_length << ", " << options.rounds
            << " round(s)\n";
  std::vector<RunSpec> time_specs;
  RunSpec time_anchor = make_spec("ulysses", 1, options.time_length);
  time_anchor.anchor = "save";
  time_anchor.anchor_file = runner.anchor_path(options.time_length);
  time_specs.push_back(time_anchor);
  RunSpec pair = make_spec("ulysses", 2, options.time_length);  // two single-rank runs at once
  pair.ulysses = 1;
  pair.anchor = "check";
  pair.anchor_file = time_anchor.anchor_file;
  time_specs.push_back(pair);
  for (int nproc : {2, 4}) {
    for (const std::string mode : {"zigzag", "ulysses", "ring", "hybrid"}) {
      if (mode == "hybrid" && nproc < 4) continue;
      RunSpec spec = make_spec(mode, nproc, options.time_length);
      spec.anchor = "check";
      spec.anchor_file = time_anchor.anchor_file;
      time_specs.push_back(spec);
    }
  }
  std::vector<RunResult> time_results(time_specs.size());
  std::vector<double> best_time(time_specs.size(), INFINITY), best_cpu(time_specs.size(), INFINITY);
  for (int round = 0; round < options.rounds; ++round) {
    for (size_t i = 0; i < time_specs.size(); ++i) {
      RunSpec spec = time_specs[i];
      if (round > 0 && spec.anchor == "save") spec.anchor.clear();   // saved once
      if (round > 0 && spec.anchor == "check") spec.anchor.clear();  // checked once
      const RunResult result = runner.run(spec);
      check_result(result, spec.anchor == "check");
      if (!result.ran) continue;
      if (round == 0) time_results[i] = result;
      best_time[i] = std::min(best_time[i], result.best_time());
      best_cpu[i] = std::min(best_cpu[i], result.best_cpu_time());
    }
  }

  // ---- 3. memory at L_m ----
  std::cerr << "phase 3: peak memory, L = " << options.memory_length << "\n";
  RunSpec memory_anchor = make_spec("ulysses", 1, options.memory_length);
  memory_anchor.anchor = "save";
  memory_anchor.anchor_file = runner.anchor_path(options.memory_length);
  const RunResult memory_single = runner.run(memory_anchor);
  check_result(memory_single, false);
  std::vector<RunResult> memory_results;
  for (const std::string& mode : options.memory_modes) {
    for (int nproc : {2, 4}) {
      RunSpec spec = make_spec(mode, nproc, options.memory_length);
      spec.anchor = "check";
      spec.anchor_file = memory_anchor.anchor_file;
      memory_results.push_back(runner.run(spec));
      check_result(memory_results.back(), true);
    }
  }
  const std::string load_after = load_average();
  const double wall = seconds_since(wall_start);

  // ---- Report ----
  std::ostringstream md;  // the RESULTS.md section
  json report = {{"bench", "sp_attention"},
                 {"heads", kHeads},
                 {"kv_heads", kKvHeads},
                 {"head_dim", kHeadDim},
                 {"dtype", "float32"},
                 {"causal", true},
                 {"bytes_length", options.bytes_length},
                 {"time_length", options.time_length},
                 {"memory_length", options.memory_length}};
  // Throughput of 2 processes against 1 on this machine during the time phase (2 when both cores are free).
  const double capacity = 2 * best_time[0] / best_time[1];
  md << "## sp_attention\n\n";
  md << fmt::format(
      "`{}`, {}, {}, {} cores, BLAS {} ({}), one intra-op thread per rank; load average {} before, {} "
      "after (it counts this benchmark's own ranks, up to 4); {:.0f} s in all. Gloo over loopback, every "
      "rank a process started through `sp/rank_run.h`.{}\n\n",
      command_line, started, lvrl::bench::cpu_model(), std::thread::hardware_concurrency(), blas_core(),
      std::getenv("OPENBLAS_CORETYPE") ? fmt::format("OPENBLAS_CORETYPE={}", std::getenv("OPENBLAS_CORETYPE"))
                                       : std::string("OPENBLAS_CORETYPE unset"),
      load_before, load_after, wall,
      capacity < 1.8
          ? fmt::format(" **Other jobs took CPU during the time phase (two independent processes got "
                        "{:.2f}× one's throughput, not 2×): speed-ups are below what free cores give.**",
                        capacity)
          : std::string());
  md << fmt::format(
      "Shapes: B = 1, H = {}, H_kv = {}, D = {}, float32, causal; local kernel blocks {}×{}. As in a decoder "
      "layer, q, k and v are projections of a hidden-state leaf x [B, l, H·D] (weights fixed), so only the "
      "attention keeps them; the P = 1 run is the local kernel itself (no SP machinery).\n\n",
      kHeads, kKvHeads, kHeadDim, kBlock, kBlock);

  // Bytes.
  std::cout << fmt::format("\nbytes sent per rank, fwd+bwd, L = {} (N/P tokens per rank):\n",
                           options.bytes_length);
  md << fmt::format("### Bytes sent per rank (fwd + bwd, L = {})\n\n", options.bytes_length);
  md << "docs/sp.md's closed form (`note`): Ulysses 2·(U−1)/U·(2d + 2d_kv)·N/P, ring (R−1) K/V hops "
        "of 2·N·d_kv/P each way plus R hops of fp32 dK/dV; d_kv → U·d_h where H_kv < U replicates KV heads. "
        "`expected` is `SequenceParallelAttention::expected_bytes` (per rank, exact head split). "
        "`measured` is comm.h's counter, max over ranks; the error is the worst rank's.\n\n";
  md << "| mode | P | U×R | measured B | note B | expected B | worst err vs note | max rel err vs P = 1 "
        "|\n|---|---|---|---|---|---|---|---|\n";
  for (const BytesRow& row : bytes_rows) {
    int64_t measured = 0, expected = 0;
    for (const RankStats& r : row.result.ranks) {
      measured = std::max(measured, r.bytes_sent);
      expected = std::max(expected, r.expected_bytes);
    }
    const RunSpec& s = row.result.spec;
    std::cout << fmt::format(
        "  {:<16} P={} U×R={}×{}  measured {:>10}  note {:>10}  expected {:>10}  worst {:.3f}%  "
        "err {:.2g}\n",
        s.label(), s.nproc, s.ulysses, s.ring, measured, row.note, expected, 100 * row.worst_vs_note,
        row.result.max_rel_err);
    md << fmt::format("| {} | {} | {}×{} | {} | {} | {} | {:.3f}% | {:.2g} |\n", s.mode, s.nproc, s.ulysses,
                      s.ring, measured, row.note, expected, 100 * row.worst_vs_note, row.result.max_rel_err);
    report["bytes"].push_back({{"mode", s.mode},
                               {"nproc", s.nproc},
                               {"ulysses", s.ulysses},
                               {"ring", s.ring},
                               {"measured", measured},
                               {"note_formula", row.note},
                               {"expected", expected},
                               {"worst_rel_diff_note", row.worst_vs_note},
                               {"worst_rel_diff_expected", row.worst_vs_expected},
                               {"max_rel_err", row.result.max_rel_err}});
  }
  md << fmt::format(
      "\nThe P = 1 run (the reference for the table's last column) against the same kernel in float64: "
      "max rel err {:.2g}.\n\n",
      bytes_anchor_result.max_rel_err);

  // Time.
  const double anchor_time = best_time[0];
  double zigzag_speedup = NAN, zigzag_split = NAN;
  std::cout << fmt::format("\nfwd+bwd, same total work (L = {}), best of {} round(s), the slowest rank:\n",
                           options.time_length, options.rounds);
  md << fmt::format("### fwd + bwd time, same total work (L = {})\n\n", options.time_length);
  md << fmt::format(
      "Step time = the slowest rank's forward + backward, best of {} rounds; every run is a fresh launch and "
      "the rows alternate within each round, so load from other jobs hits them alike. Anchors: P = 1 (the "
      "local blockwise kernel on the whole sequence) and `2 × single` — two independent copies of it at once "
      "(DP = 2, SP = 1), whose throughput against one alone (`capacity`, 2 on two free cores) is what this "
      "machine had to give a second rank during the run. Speed-up = P = 1 time / SP time; `of capacity` = "
      "speed-up / capacity. P = 4 runs 4 ranks on the 2 cores (reported, not judged). `work split` = the "
      "anchor's CPU seconds / the busiest rank's CPU seconds over the same step (Gloo threads included).\n\n",
      options.rounds);
  md << "| mode | P | U×R | step s | speed-up vs P = 1 | of capacity | busiest rank CPU s | work split | "
        "peak growth / rank MiB | max rel err vs P = 1 |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < time_specs.size(); ++i) {
    const RunSpec& s = time_specs[i];
    const double speedup = anchor_time / best_time[i];
    const double split = best_cpu[0] / best_cpu[i];
    if (s.mode == "zigzag" && s.nproc == 2) {
      zigzag_speedup = speedup;
      zigzag_split = split;
    }
    const RunResult& r = time_results[i];
    const std::string name = i == 0 ? "single rank" : s.independent() ? "2 × single at once" : s.mode;
    std::string speedup_text = fmt::format("**{:.2f}×**", speedup),
                of_capacity = fmt::format("{:.2f}", speedup / capacity);
    std::string split_text = fmt::format("{:.2f}×", split);
    if (i == 0 || s.independent()) {
      speedup_text = i == 0 ? "1 (anchor)" : fmt::format("capacity {:.2f}×", capacity);
      of_capacity = "-";
      split_text = i == 0 ? "1" : "-";
    }
    std::cout << fmt::format(
        "  {:<20} P={}  {:>8.2f} s  speed-up {:.2f}x ({:.2f} of capacity)  cpu {:.2f} s  split "
        "{:.2f}x  growth {} MiB\n",
        s.label(), s.nproc, best_time[i], speedup, speedup / capacity, best_cpu[i], split,
        r.ran ? mib(r.max_growth()) : "-");
    md << fmt::format("| {} | {} | {}×{} | {:.2f} | {} | {} | {:.2f} | {} | {} | {} |\n", name, s.nproc,
                      s.ulysses, s.ring, best_time[i], speedup_text, of_capacity, best_cpu[i], split_text,
                      r.ran ? mib(r.max_growth()) : "-", i == 0 ? "-" : fmt::format("{:.2g}", r.max_rel_err));
    report["time"].push_back({{"mode", i == 0            ? "single"
                                       : s.independent() ? "2x_single"
                                                         : s.mode},
                              {"nproc", s.nproc},
                              {"ulysses", s.ulysses},
                              {"ring", s.ring},
                              {"step_s", best_time[i]},
                              {"speedup", speedup},
                              {"busiest_rank_cpu_s", best_cpu[i]},
                              {"work_split", split}});
  }
  report["capacity"] = capacity;
  const bool speedup_met = zigzag_speedup >= kSpeedupTarget;

  // Memory.
  std::cout << fmt::format("\npeak RSS growth per rank over the baseline, L = {}:\n", options.memory_length);
  md << fmt::format("\n### Peak memory per rank (L = {})\n\n", options.memory_length);
  md << fmt::format(
      "Growth = VmHWM − VmRSS at the baseline (after LibTorch start-up and the rendezvous, before q/k/v "
      "exist; VmHWM reset there: {}), the largest rank's; x, dout, every activation the attention keeps and "
      "every gradient (dx, and dq/dk/dv held by hooks) included. "
      "Target ≤ {} × single / P. CPU allocator: {} (core/cpu_allocator.h); `tensors` = its peak of large "
      "(≥ 1 MiB) tensors held at once over the same span, the part of the growth the algorithm decides.\n\n",
      memory_single.peak_reset ? "yes" : "**no, the figure includes start-up peaks**", kMemoryTarget,
      memory_single.cpu_allocator);
  md << "| mode | P | peak growth / rank MiB | single / P MiB | ratio to single / P | tensors / rank MiB | "
        "baseline RSS MiB | max rel err vs P = 1 |\n|---|---|---|---|---|---|---|---|\n";
  const double single_growth = memory_single.ran ? static_cast<double>(memory_single.max_growth()) : NAN;
  md << fmt::format("| single rank | 1 | {} | {} | 1 | {} | {} | - |\n", mib(memory_single.max_growth()),
                    mib(memory_single.max_growth()), mib(memory_single.max_tensor_peak()),
                    memory_single.ran ? mib(memory_single.ranks[0].baseline_rss) : "-");
  std::cout << fmt::format("  single rank      P=1  {} MiB\n", mib(memory_single.max_growth()));
  bool memory_met = memory_single.ran;
  std::map<std::string, double> zigzag_ratio;
  for (const RunResult& r : memory_results) {
    if (!r.ran) continue;
    const double per_rank = single_growth / r.spec.nproc;
    const double ratio = r.max_growth() / per_rank;
    memory_met &= ratio <= kMemoryTarget;
    std::cout << fmt::format("  {:<16} P={}  {} MiB  (single/P {:.0f} MiB, ratio {:.2f})\n", r.spec.label(),
                             r.spec.nproc, mib(r.max_growth()), per_rank / 1048576.0, ratio);
    md << fmt::format(
        "| {} | {} | {} | {:.0f} | {} | {} | {} | {:.2g} |\n", r.spec.mode, r.spec.nproc, mib(r.max_growth()),
        per_rank / 1048576.0,
        ratio <= kMemoryTarget ? fmt::format("{:.2f}", ratio) : fmt::format("**{:.2f}**", ratio),
        mib(r.max_tensor_peak()), mib(r.ranks[0].baseline_rss), r.max_rel_err);
    report["memory"].push_back({{"mode", r.spec.mode},
                                {"nproc", r.spec.nproc},
                                {"peak_growth", r.max_growth()},
                                {"tensor_peak", r.max_tensor_peak()},
                                {"ratio_to_single_over_p", ratio}});
  }
  report["memory_single_growth"] = memory_single.ran ? memory_single.max_growth() : -1;

  // Largest L under the cap, from the per-token slope of the zigzag growth between L_t and L_m.
  const double cap = options.cap_gib * 1073741824.0;
  md << fmt::format("\n### Largest L under a per-rank cap of {} GiB of growth\n\n", options.cap_gib);
  md << fmt::format(
      "Computed, not searched: growth is linear in L (blockwise attention keeps no L×L term), so "
      "L_max = (cap − a) / b from the line through the zigzag runs at L = {} and {} (P = 1: the "
      "single-rank runs); rounded down to a multiple of 2P. A run at L_max would take hours at P = 1 "
      "(work grows as L²). `linearity` = the L = {} run's growth against the line, a check that growth is "
      "linear in L (under LVRL_CPU_ALLOCATOR=system, malloc's reuse slack at short L adds tens of MiB).\n\n",
      options.time_length, options.memory_length, options.bytes_length);
  md << "| P | growth at L_t MiB | growth at L_m MiB | MiB per 1k tokens | L_max | linearity at short L "
        "|\n|---|---|---|---|---|---|\n";
  std::cout << fmt::format("\nlargest L under {} GiB of growth per rank (from the per-token slope):\n",
                           options.cap_gib);
  for (int nproc : {1, 2, 4}) {
    auto find = [&](const std::vector<RunResult>& rows, int64_t length) -> const RunResult* {
      for (const RunResult& r : rows) {
        const bool match =
            nproc == 1 ? r.spec.nproc == 1 : (r.spec.nproc == nproc && r.spec.mode == "zigzag");
        if (r.ran && match && r.spec.length == length) return &r;
      }
      return nullptr;
    };
    std::vector<RunResult> all = time_results;
    all.push_back(memory_single);
    all.insert(all.end(), memory_results.begin(), memory_results.end());
    all.push_back(bytes_anchor_result);
    for (const BytesRow& row : bytes_rows) all.push_back(row.result);
    const RunResult* low = find(all, options.time_length);
    const RunResult* high = find(all, options.memory_length);
    const RunResult* shortest = find(all, options.bytes_length);
    if (low == nullptr || high == nullptr) continue;
    const double slope = static_cast<double>(high->max_growth() - low->max_growth()) /
                         static_cast<double>(options.memory_length - options.time_length);
    const double intercept = high->max_growth() - slope * options.memory_length;
    int64_t l_max = slope > 0 ? static_cast<int64_t>((cap - intercept) / slope) : -1;
    l_max -= l_max % (2 * nproc);
    std::string linearity = "-";
    if (shortest != nullptr) {
      const double predicted = intercept + slope * options.bytes_length;
      linearity = fmt::format("{} MiB measured, {:.0f} on the line", mib(shortest->max_growth()),
                              predicted / 1048576.0);
    }
    std::cout << fmt::format("  P={}  {:.2f} MiB per 1k tokens, L_max {}\n", nproc, slope * 1024 / 1048576.0,
                             l_max);
    md << fmt::format("| {} | {} | {} | {:.2f} | {} | {} |\n", nproc, mib(low->max_growth()),
                      mib(high->max_growth()), slope * 1024 / 1048576.0, l_max, linearity);
    report["largest_length_under_cap"][std::to_string(nproc)] = l_max;
  }
  report["cap_gib"] = options.cap_gib;

  md << fmt::format(
      "\nTargets: bytes within 1% of the formula: {}; peak growth per rank ≤ {} × single / P at L = {} "
      "({}; P = 2 and 4): {}; zigzag speed-up at P = 2 ≥ {}×: {} ({:.2f}×, {:.2f} of the {:.2f}× "
      "capacity two independent processes got in the same run). Results: {}.\n",
      bytes_ok ? "met" : "**MISSED**", kMemoryTarget, options.memory_length,
      fmt::format("{}", fmt::join(options.memory_modes, ", ")), memory_met ? "met" : "**MISSED**",
      kSpeedupTarget, speedup_met ? "met" : "**MISSED**", zigzag_speedup, zigzag_speedup / capacity, capacity,
      correct ? "verified" : "**WRONG**");
  std::cout << fmt::format(
      "\ntargets: bytes within 1%: {}; memory <= {} x single/P: {}; zigzag speed-up >= {}x: {} ({:.2f}x;\n"
      "machine capacity {:.2f}x)\n",
      bytes_ok ? "met" : "MISSED", kMemoryTarget, memory_met ? "met" : "MISSED", kSpeedupTarget,
      speedup_met ? "met" : "MISSED", zigzag_speedup, capacity);
  for (const std::string& p : problems) std::cout << "problem: " << p << "\n";
  report["zigzag_speedup_p2"] = zigzag_speedup;
  report["zigzag_work_split_p2"] = zigzag_split;
  report["zigzag_speedup_of_capacity_p2"] = zigzag_speedup / capacity;
  report["bytes_within_1pct"] = bytes_ok;
  report["memory_target_met"] = memory_met;
  report["speedup_target_met"] = speedup_met;
  report["correct"] = correct;
  report["load_before"] = load_before;
  report["load_after"] = load_after;
  report["wall_s"] = wall;
  if (!options.results.empty()) {
    lvrl::bench::replace_results_section(options.results, "## sp_attention", md.str());
    std::cout << "wrote the sp_attention section of " << options.results << "\n";
  }
  std::cout << report.dump() << "\n";
  return correct && bytes_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  RunSpec worker;
  bool is_worker = false;
  bool lengths_given = false;
  std::string command_line = "build/bench/bench_sp_attention";
  auto usage = [] {
    std::cerr
        << "usage: bench_sp_attention [--quick] [--bytes-length L] [--time-length L] [--memory-length L]\n"
           "                          [--memory-modes zigzag,ulysses,ring] [--rounds N] [--cap-gib G]\n"
           "                          [--results bench/RESULTS.md]\n";
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--worker") {
      is_worker = true;
    } else if (arg == "--reference") {
      worker.reference = true;
    } else if (has_value) {
      const std::string value = argv[++i];
      if (arg == "--results")
        options.results = value;
      else if (arg == "--bytes-length")
        options.bytes_length = std::atoll(value.c_str()), lengths_given = true;
      else if (arg == "--time-length")
        options.time_length = std::atoll(value.c_str()), lengths_given = true;
      else if (arg == "--memory-length")
        options.memory_length = std::atoll(value.c_str()), lengths_given = true;
      else if (arg == "--rounds")
        options.rounds = std::max(1, std::atoi(value.c_str()));
      else if (arg == "--cap-gib")
        options.cap_gib = std::atof(value.c_str());
      else if (arg == "--memory-modes") {
        options.memory_modes.clear();
        std::stringstream list(value);
        for (std::string mode; std::getline(list, mode, ',');) {
          if (mode != "zigzag" && mode != "ulysses" && mode != "ring") return usage();
          options.memory_modes.push_back(mode);
        }
      } else if (arg == "--mode")
        worker.mode = value;
      else if (arg == "--nproc")
        worker.nproc = std::atoi(value.c_str());
      else if (arg == "--ulysses")
        worker.ulysses = std::atoi(value.c_str());
      else if (arg == "--ring")
        worker.ring = std::atoi(value.c_str());
      else if (arg == "--length")
        worker.length = std::atoll(value.c_str());
      else if (arg == "--reps")
        worker.reps = std::max(1, std::atoi(value.c_str()));
      else if (arg == "--anchor")
        worker.anchor = value;
      else if (arg == "--anchor-file")
        worker.anchor_file = value;
      else
        return usage();
    } else {
      return usage();
    }
  }
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  try {
    if (is_worker) return run_worker(worker);
    if (options.quick && !lengths_given) {
      options.bytes_length = 2048;
      options.time_length = 4096;
      options.memory_length = 8192;
    }
    if (options.quick) options.rounds = 1;
    return run_parent(options, command_line);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
