// `lvrl sp check`: one SP attention mode against a single-process float64 reference, with real
// Gloo ranks.
//
// With --nproc P > 1 the command runs P copies of itself (run_on_ranks, sp/rank_run.h: a FileStore
// rendezvous in a fresh directory, so checks in parallel never race for a port; a hidden --sp-worker
// flag) and waits; with P = 1 it is its own only rank. Every rank draws the same seeded full
// q, k, v, dout in float64 (then casts to --dtype), keeps its shard per the SequenceLayout, runs
// SequenceParallelAttention forward and backward, and all-gathers out / dq / dk / dv and its byte
// counts to everyone — equal shard sizes make one all_gather per tensor the simplest transport.
// Rank 0 then
//   * checks that every padding row of dq, dk, dv is exactly zero,
//   * compares out, dq, dk, dv with the float64 reference (sp/reference_attention.h) on the
//     --dtype-rounded inputs, as max |sp − ref| / max |ref| (core/tensor_compare.h): ≤ 1e-10 for
//     float64, ≤ 1e-5 for float32,
//   * compares every rank's bytes_sent() over the attention's forward + backward with
//     expected_bytes() (within 1%),
// prints one JSON line and exits 1 when a check fails (the config and seed go to stderr).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/command.h"
#include "core/dtype_name.h"
#include "core/error.h"
#include "core/tensor_compare.h"
#include "model/attention.h"
#include "sp/comm.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "sp/rank_run.h"
#include "sp/reference_attention.h"
#include "sp/sp_attention.h"

namespace lvrl::sp {
namespace {

struct CheckArgs {
  int nproc = 1;
  std::string mode;
  int ulysses = 0, ring = 0;
  int64_t seq = 0, heads = 0, kv_heads = 0, head_dim = 0;
  bool causal = false;
  int64_t batch = 1;
  std::string dtype = "float64";
  uint64_t seed = 0;
  int64_t block = 256;
  bool worker = false;
};

struct Degrees {
  int ulysses = 1, ring = 1;
};

// U and R from the mode, --nproc and the optional --ulysses / --ring; InputError naming the flags.
Degrees degrees_of(const CheckArgs& args, SpMode mode) {
  const int P = args.nproc;
  Degrees d;
  switch (mode) {
    case SpMode::Ulysses:
      d = {P, 1};
      break;
    case SpMode::Ring:
    case SpMode::Zigzag:
      d = {1, P};
      break;
    case SpMode::Hybrid:
      if (args.ulysses <= 0 && args.ring <= 0) {
        throw InputError({"", 0, "--ulysses", ""},
                         "hybrid needs --ulysses U and/or --ring R with U × R = --nproc");
      }
      d.ulysses = args.ulysses > 0 ? args.ulysses : P / std::max(args.ring, 1);
      d.ring = args.ring > 0 ? args.ring : P / std::max(args.ulysses, 1);
      break;
  }
  if ((args.ulysses > 0 && args.ulysses != d.ulysses) || (args.ring > 0 && args.ring != d.ring) ||
      d.ulysses * d.ring != P) {
    throw InputError({"", 0, "--ulysses/--ring", fmt::format("{}/{}", args.ulysses, args.ring)},
                     fmt::format("mode {} on --nproc {} runs U = {}, R = {} (U × R must be P)", args.mode, P,
                                 d.ulysses, d.ring));
  }
  return d;
}

void validate(const CheckArgs& args) {
  if (args.nproc < 1) throw InputError({"", 0, "--nproc", std::to_string(args.nproc)}, "expected P >= 1");
  if (args.seq < 1) throw InputError({"", 0, "--seq", std::to_string(args.seq)}, "expected a length >= 1");
  if (args.batch < 1) throw InputError({"", 0, "--batch", std::to_string(args.batch)}, "expected B >= 1");
  if (args.head_dim < 1)
    throw InputError({"", 0, "--head-dim", std::to_string(args.head_dim)}, "expected D >= 1");
  if (args.block < 1)
    throw InputError({"", 0, "--block", std::to_string(args.block)}, "expected a block >= 1");
  if (args.heads < 1 || args.kv_heads < 1 || args.heads % args.kv_heads != 0) {
    throw InputError({"", 0, "--heads/--kv-heads", fmt::format("{}/{}", args.heads, args.kv_heads)},
                     "expected H >= 1 and H_kv >= 1 with H divisible by H_kv");
  }
}

std::string describe(const CheckArgs& args, const Degrees& d) {
  return fmt::format("mode {} P={} (U={} R={}) L={} B={} H={} H_kv={} D={} {} {} seed={} block={}", args.mode,
                     args.nproc, d.ulysses, d.ring, args.seq, args.batch, args.heads, args.kv_heads,
                     args.head_dim, args.causal ? "causal" : "full", args.dtype, args.seed, args.block);
}

// A rank's arguments: the same check, flags spelled out, plus --sp-worker.
std::vector<std::string> worker_args(const CheckArgs& args) {
  std::vector<std::string> argv = {"sp", "check"};
  auto add = [&](const char* flag, const std::string& value) {
    argv.push_back(flag);
    argv.push_back(value);
  };
  add("--nproc", std::to_string(args.nproc));
  add("--mode", args.mode);
  if (args.ulysses > 0) add("--ulysses", std::to_string(args.ulysses));
  if (args.ring > 0) add("--ring", std::to_string(args.ring));
  add("--seq", std::to_string(args.seq));
  add("--heads", std::to_string(args.heads));
  add("--kv-heads", std::to_string(args.kv_heads));
  add("--head-dim", std::to_string(args.head_dim));
  add("--batch", std::to_string(args.batch));
  add("--dtype", args.dtype);
  add("--seed", std::to_string(args.seed));
  add("--block", std::to_string(args.block));
  if (args.causal) argv.push_back("--causal");
  argv.push_back("--sp-worker");
  return argv;
}

// Every rank's part of a [B, l, ...] tensor, in SP rank order.
std::vector<at::Tensor> gather_parts(Mesh& mesh, const at::Tensor& local) {
  return all_gather_cat(mesh.sp(), local.contiguous(), 1).chunk(mesh.sp_size(), 1);
}

int run_worker(const CheckArgs& args) {
  at::set_num_threads(1);
  const SpMode mode = parse_sp_mode(args.mode);
  const Degrees degrees = degrees_of(args, mode);
  const at::ScalarType dtype =
      parse_float_dtype(args.dtype, {at::kFloat, at::kDouble}, {"", 0, "--dtype", ""});
  const DistributedEnv env = DistributedEnv::from_environment();
  if (env.world_size != args.nproc) {
    throw InputError({"", 0, "WORLD_SIZE", std::to_string(env.world_size)},
                     fmt::format("sp check --nproc {} runs as that many ranks", args.nproc));
  }
  const std::shared_ptr<Mesh> mesh =
      Mesh::create(env, MeshShape{args.nproc, degrees.ulysses, degrees.ring}, c10::Device(c10::kCPU));
  const SequenceLayout layout =
      SequenceLayout::make(mode, degrees.ulysses, degrees.ring, args.seq, args.causal);
  SequenceParallelAttention attention(mesh, mode, model::BlockwiseOptions{args.block, args.block});
  attention.set_layout(layout);
  model::AttentionSpec spec;
  spec.mask = args.causal ? model::MaskKind::Causal : model::MaskKind::Full;

  // The same full tensors on every rank: float64 draws from one seeded generator, then the dtype.
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(args.seed);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  auto draw = [&](int64_t heads) {
    return at::randn({args.batch, args.seq, heads, args.head_dim}, generator, f64).to(dtype);
  };
  const at::Tensor q = draw(args.heads), k = draw(args.kv_heads), v = draw(args.kv_heads),
                   dout = draw(args.heads);
  const int rank = mesh->sp_rank();
  auto local = [&](const at::Tensor& full) { return shard(full, 1, layout, rank).requires_grad_(true); };
  const at::Tensor q_local = local(q), k_local = local(k), v_local = local(v);
  const at::Tensor dout_local = shard(dout, 1, layout, rank);

  reset_bytes_sent();
  const at::Tensor out_local = attention.forward(q_local, k_local, v_local, spec).out;
  torch::autograd::backward({out_local}, {dout_local});
  const int64_t measured = bytes_sent();
  const int64_t formula =
      attention.expected_bytes(args.batch, args.heads, args.kv_heads, args.head_dim, at::elementSize(dtype));

  const std::vector<at::Tensor> out_parts = gather_parts(*mesh, out_local.detach());
  const std::vector<at::Tensor> dq_parts = gather_parts(*mesh, q_local.grad());
  const std::vector<at::Tensor> dk_parts = gather_parts(*mesh, k_local.grad());
  const std::vector<at::Tensor> dv_parts = gather_parts(*mesh, v_local.grad());
  const at::Tensor bytes =
      all_gather_cat(mesh->sp(), at::tensor({measured, formula}, at::kLong), 0).view({-1, 2});
  if (rank != 0) return 0;

  // Padding rows of every rank's gradients must be exactly zero.
  double padding_grad = 0;
  for (int r = 0; r < layout.ranks(); ++r) {
    const at::Tensor padded_rows = layout.token_indices(r).ge(layout.length).nonzero().view({-1});
    for (const auto* parts : {&dq_parts, &dk_parts, &dv_parts}) {
      const at::Tensor padding = (*parts)[r].index_select(1, padded_rows);
      if (padding.numel() > 0) padding_grad = std::max(padding_grad, padding.abs().max().item<double>());
    }
  }
  const ReferenceAttention ref = reference_attention(q, k, v, dout, args.causal);
  const double err_out = max_relative_difference(unshard(out_parts, 1, layout), ref.out);
  const double err_dq = max_relative_difference(unshard(dq_parts, 1, layout), ref.dq);
  const double err_dk = max_relative_difference(unshard(dk_parts, 1, layout), ref.dk);
  const double err_dv = max_relative_difference(unshard(dv_parts, 1, layout), ref.dv);
  int64_t max_measured = 0, max_formula = 0;
  bool bytes_ok = true;
  for (int64_t r = 0; r < bytes.size(0); ++r) {
    const int64_t m = bytes[r][0].item<int64_t>(), f = bytes[r][1].item<int64_t>();
    max_measured = std::max(max_measured, m);
    max_formula = std::max(max_formula, f);
    if (std::abs(static_cast<double>(m - f)) > 0.01 * static_cast<double>(f)) {
      bytes_ok = false;
      std::cerr << fmt::format("sp check: rank {} sent {} bytes, the formula says {}\n", r, m, f);
    }
  }

  const double tolerance = dtype == at::kDouble ? 1e-10 : 1e-5;
  const double worst = std::max({err_out, err_dq, err_dk, err_dv});
  // NaN compares false: `!(worst <= tolerance)` fails on it.
  const bool ok = worst <= tolerance && padding_grad == 0 && bytes_ok;
  nlohmann::ordered_json report = {{"max_rel_err_out", err_out},
                                   {"max_rel_err_dq", err_dq},
                                   {"max_rel_err_dk", err_dk},
                                   {"max_rel_err_dv", err_dv},
                                   {"bytes_sent_per_rank", max_measured},
                                   {"bytes_formula", max_formula},
                                   {"max_abs_padding_grad", padding_grad},
                                   {"tolerance", tolerance},
                                   {"mode", args.mode},
                                   {"nproc", args.nproc},
                                   {"ulysses", degrees.ulysses},
                                   {"ring", degrees.ring},
                                   {"ok", ok}};
  std::cout << report.dump() << std::endl;
  if (!ok) {
    std::cerr << fmt::format(
        "sp check FAILED ({}): max rel err {:.3g} (tolerance {:.0e}), padding grad {}, bytes {}\n",
        describe(args, degrees), worst, tolerance, padding_grad, bytes_ok ? "ok" : "differ");
  }
  return ok ? 0 : 1;
}

int run_check(const CheckArgs& args) {
  validate(args);
  const SpMode mode = parse_sp_mode(args.mode);
  degrees_of(args, mode);
  parse_float_dtype(args.dtype, {at::kFloat, at::kDouble}, {"", 0, "--dtype", ""});
  if (args.worker || args.nproc == 1) return run_worker(args);
  RankRunOptions run;
  run.nproc = args.nproc;
  run.worker_args = worker_args(args);
  return run_on_ranks(run).exit_code;
}

const RegisterCommand check_command(
    "sp check",
    "Run one SP attention mode forward + backward on P local ranks and compare with a float64 reference",
    [](CLI::App& app) {
      auto args = std::make_shared<CheckArgs>();
      app.add_option("--nproc", args->nproc, "P: ranks to start")->capture_default_str();
      app.add_option("--mode", args->mode, "ulysses | ring | zigzag | hybrid")->required();
      app.add_option("--ulysses", args->ulysses, "U (hybrid)");
      app.add_option("--ring", args->ring, "R (hybrid)");
      app.add_option("--seq", args->seq, "sequence length L (any; padded per the layout)")->required();
      app.add_option("--heads", args->heads, "query heads H")->required();
      app.add_option("--kv-heads", args->kv_heads, "key/value heads H_kv (H % H_kv == 0)")->required();
      app.add_option("--head-dim", args->head_dim, "head dimension D")->required();
      app.add_flag("--causal", args->causal, "causal attention");
      app.add_option("--batch", args->batch, "batch size B")->capture_default_str();
      app.add_option("--dtype", args->dtype, "float32 | float64")->capture_default_str();
      app.add_option("--seed", args->seed, "seed of q, k, v, dout")->capture_default_str();
      app.add_option("--block", args->block, "query/key block of the local blockwise kernel")
          ->capture_default_str();
      app.add_flag("--sp-worker", args->worker, "one rank of a check (set by the launcher)")->group("");
      return [args] { return run_check(*args); };
    });

}  // namespace
}  // namespace lvrl::sp
