// The DP × SP (U × R) mesh and the SP collectives on real Gloo ranks (processes started by
// run_ranks, meeting at the launcher's TCPStore as under `lvrl sp launch`): every group holds exactly the
// ranks of mesh.h's layout (rank = dp·SP + ring·U + u), in group-rank order; all_to_all with uneven (and
// empty) slices, the all-gather, the all-reduce and the ring exchange move the right data; bytes_sent matches
// the formulas in comm.h. Also: the environment and mesh-shape errors, and a one-process mesh.
#include "sp/mesh.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/csrc/autograd/autograd.h>

#include <filesystem>
#include <numeric>
#include <sstream>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "core/error.h"
#include "core/tensor_compare.h"
#include "sp/comm.h"
#include "sp/sp_attention.h"
#include "tests/support/files.h"
#include "tests/support/multi_rank.h"

namespace lvrl::sp {
namespace {
using test::RankRun;
using test::ranks_succeeded;
using test::run_ranks;

enum class Kind { World, Dp, Sp, Ulysses, Ring };
const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::World:
      return "world";
    case Kind::Dp:
      return "dp";
    case Kind::Sp:
      return "sp";
    case Kind::Ulysses:
      return "ulysses";
    case Kind::Ring:
      return "ring";
  }
  return "?";
}

// The members of `rank`'s group of `kind`, in group-rank order, enumerated from the layout formula.
std::vector<int64_t> expected_members(Kind kind, int rank, int world, int sp, int u, int r) {
  const int dp = rank / sp, s = rank % sp, ring = s / u, uly = s % u;
  std::vector<int64_t> members;
  switch (kind) {
    case Kind::World:
      for (int i = 0; i < world; ++i) members.push_back(i);
      break;
    case Kind::Dp:
      for (int d = 0; d < world / sp; ++d) members.push_back(d * sp + s);
      break;
    case Kind::Sp:
      for (int t = 0; t < sp; ++t) members.push_back(dp * sp + t);
      break;
    case Kind::Ulysses:
      for (int v = 0; v < u; ++v) members.push_back(dp * sp + ring * u + v);
      break;
    case Kind::Ring:
      for (int q = 0; q < r; ++q) members.push_back(dp * sp + q * u + uly);
      break;
  }
  return members;
}

c10d::ProcessGroup& group_of(const Mesh& mesh, Kind kind) {
  switch (kind) {
    case Kind::World:
      return mesh.world();
    case Kind::Dp:
      return mesh.dp();
    case Kind::Sp:
      return mesh.sp();
    case Kind::Ulysses:
      return mesh.ulysses();
    case Kind::Ring:
      return mesh.ring();
  }
  return mesh.world();
}

// Rows a rank sends to another in the uneven all-to-all: [rows, 3, 2] holding (src, dst, row, cell).
at::Tensor slice_rows(int src, int dst, int64_t rows) {
  at::Tensor base = at::arange(rows, at::kFloat).view({rows, 1, 1}) + src * 1000 + dst * 100;
  return base + at::arange(6, at::kFloat).view({1, 3, 2}) * 0.125;
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  at::Tensor c = t.contiguous().to(at::kLong);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void check_group(const Mesh& mesh, Kind kind, int u, int r) {
  SCOPED_TRACE(std::string("group ") + kind_name(kind));
  c10d::ProcessGroup& group = group_of(mesh, kind);
  const std::vector<int64_t> members =
      expected_members(kind, mesh.rank(), mesh.world_size(), mesh.sp_size(), u, r);
  const int P = static_cast<int>(members.size());
  const int me = static_cast<int>(std::find(members.begin(), members.end(), mesh.rank()) - members.begin());
  ASSERT_EQ(group.getSize(), P);
  ASSERT_EQ(group.getRank(), me);

  // all-reduce of the rank ids: the member sum.
  reset_bytes_sent();
  at::Tensor id = at::full({1}, mesh.rank(), at::kLong);
  all_reduce_sum(group, id);
  EXPECT_EQ(id.item<int64_t>(), std::accumulate(members.begin(), members.end(), int64_t{0}));
  EXPECT_EQ(bytes_sent(), 2 * (P - 1) * 8 / P);

  // A non-contiguous all-reduce writes back into the caller's view.
  at::Tensor wide = at::full({3, 2}, 1.0, at::kDouble);
  at::Tensor column = wide.select(1, 1);
  all_reduce_sum(group, column);
  EXPECT_TRUE(wide.select(1, 1).eq(P).all().item<bool>());
  EXPECT_TRUE(wide.select(1, 0).eq(1).all().item<bool>());

  // all-gather along dims 0 and 1: the members, in group-rank order.
  reset_bytes_sent();
  EXPECT_EQ(to_vector(all_gather_cat(group, at::full({1}, mesh.rank(), at::kLong), 0)), members);
  EXPECT_EQ(bytes_sent(), (P - 1) * 8);
  at::Tensor gathered = all_gather_cat(group, at::full({2, 1}, mesh.rank(), at::kInt), 1);
  ASSERT_EQ(gathered.sizes(), (std::vector<int64_t>{2, P}));
  EXPECT_EQ(to_vector(gathered[1]), members);

  // all-to-all, uneven: member me sends (me + j) % 3 rows to member j (0 rows included).
  std::vector<int64_t> send(P), recv(P);
  std::vector<at::Tensor> parts, expected;
  for (int j = 0; j < P; ++j) {
    send[j] = (me + j) % 3;
    recv[j] = (j + me) % 3;
    parts.push_back(slice_rows(me, j, send[j]));
    expected.push_back(slice_rows(j, me, recv[j]));
  }
  reset_bytes_sent();
  at::Tensor out = all_to_all(group, at::cat(parts, 0), send, recv);
  EXPECT_TRUE(out.equal(at::cat(expected, 0))) << out;
  EXPECT_EQ(bytes_sent(), (std::accumulate(send.begin(), send.end(), int64_t{0}) - send[me]) * 6 * 4);

  // all-to-all where member 0 sends and receives nothing at all.
  for (int j = 0; j < P; ++j) send[j] = (me == 0 || j == 0) ? 0 : 1 + j;
  for (int j = 0; j < P; ++j) recv[j] = (me == 0 || j == 0) ? 0 : 1 + me;
  parts.clear();
  expected.clear();
  for (int j = 0; j < P; ++j) {
    parts.push_back(slice_rows(me, j, send[j]));
    expected.push_back(slice_rows(j, me, recv[j]));
  }
  out = all_to_all(group, at::cat(parts, 0), send, recv);
  EXPECT_TRUE(out.equal(at::cat(expected, 0))) << out;

  // Two ring exchanges in flight at once (tags 1 and 2), waited for in reverse order: each brings
  // what member me − 1 sent, shaped as it sent it.
  const int prev = (me + P - 1) % P;
  reset_bytes_sent();
  RingExchange a(group, at::full({me + 1, 3}, static_cast<float>(members[me]), at::kFloat),
                 at::empty({prev + 1, 3}, at::kFloat), 1);
  RingExchange b(group, at::full({2}, members[me] + 100, at::kLong), at::empty({2}, at::kLong), 2);
  at::Tensor got_b = b.wait();
  at::Tensor got_a = a.wait();
  EXPECT_TRUE(got_a.equal(at::full({prev + 1, 3}, static_cast<float>(members[prev]), at::kFloat))) << got_a;
  EXPECT_TRUE(got_b.equal(at::full({2}, members[prev] + 100, at::kLong))) << got_b;
  EXPECT_EQ(bytes_sent(), P == 1 ? 0 : (me + 1) * 3 * 4 + 2 * 8);
}

struct ShapeCase {
  MeshShape shape;   // as given (zeros derived)
  int u = 0, r = 0;  // as derived
};

// "4x2x2,2x0x0" → sp × ulysses × ring per mesh.
std::vector<ShapeCase> parse_cases(const std::string& text) {
  std::vector<ShapeCase> cases;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    ShapeCase c;
    char x1, x2;
    std::istringstream fields(item);
    fields >> c.shape.sp >> x1 >> c.shape.ulysses >> x2 >> c.shape.ring;
    c.u = c.shape.ulysses ? c.shape.ulysses : (c.shape.ring ? c.shape.sp / c.shape.ring : c.shape.sp);
    c.r = c.shape.ring ? c.shape.ring : c.shape.sp / c.u;
    cases.push_back(c);
  }
  return cases;
}

TEST(MeshWorker, GroupsAndCollectives) {
  LVRL_RANK_WORKER_ONLY();
  DistributedEnv env = DistributedEnv::from_environment();
  EXPECT_EQ(env.world_size, test::worker_env_int("WORLD_SIZE"));
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  if (const char* file = std::getenv("LVRL_SP_TEST_STORE_FILE")) {  // the launcher itself always sets up TCP
    env.store_file = file;
    env.master_addr.clear();
    env.master_port = 0;
  }
  for (const ShapeCase& c : parse_cases(test::worker_env("LVRL_SP_TEST_MESHES"))) {
    SCOPED_TRACE(fmt::format("mesh sp {} ulysses {} ring {}", c.shape.sp, c.shape.ulysses, c.shape.ring));
    std::shared_ptr<Mesh> mesh = Mesh::create(env, c.shape, c10::Device(c10::kCPU));
    ASSERT_EQ(mesh->sp_size(), c.shape.sp);
    ASSERT_EQ(mesh->ulysses_size(), c.u);
    ASSERT_EQ(mesh->ring_size(), c.r);
    ASSERT_EQ(mesh->dp_size(), env.world_size / c.shape.sp);
    for (Kind kind : {Kind::World, Kind::Dp, Kind::Sp, Kind::Ulysses, Kind::Ring})
      check_group(*mesh, kind, c.u, c.r);
    test::write_result(fmt::format("{}x{}x{} ok;", c.shape.sp, c.u, c.r));
  }
}

void expect_meshes_work(int world, const std::string& meshes, const std::string& store_file = "") {
  std::map<std::string, std::string> env = {{"LVRL_SP_TEST_MESHES", meshes}};
  if (!store_file.empty()) env["LVRL_SP_TEST_STORE_FILE"] = store_file;
  test::RankRunSettings settings;
  settings.tcp_rendezvous = true;
  RankRun run = run_ranks(world, "MeshWorker.GroupsAndCollectives", env, settings);
  ASSERT_TRUE(ranks_succeeded(run));
  const size_t count = parse_cases(meshes).size();
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(static_cast<size_t>(std::count(run.results[r].begin(), run.results[r].end(), ';')), count)
        << "rank " << r << ": " << run.results[r];
  }
}

TEST(MeshRanks, TwoRanks) {
  expect_meshes_work(2, "2x2x1,2x1x2,1x1x1,2x0x0");
}
TEST(MeshRanks, ThreeRanksOverAFileStore) {
  const TempDir dir("lvrl-sp-store");
  expect_meshes_work(3, "3x3x1,3x1x3,1x1x1", dir.file("store"));
}
TEST(MeshRanks, FourRanks) {
  expect_meshes_work(4, "4x2x2,4x1x4,4x4x1,2x2x1,2x1x2,1x1x1");
}

// Sets or clears variables for one test, restoring them after.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const char* name :
         {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LVRL_STORE_FILE", "LVRL_DIST_TIMEOUT_S"}) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      ::unsetenv(name);
    }
    for (const auto& [name, value] : values) ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

void expect_env_error(std::initializer_list<std::pair<const char*, const char*>> values,
                      const std::string& key, const std::string& value) {
  ScopedEnv scoped(values);
  try {
    DistributedEnv::from_environment();
    ADD_FAILURE() << "expected an InputError naming " << key;
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_EQ(e.value(), value) << e.what();
  }
}

TEST(DistributedEnv, NothingSetIsOneRank) {
  ScopedEnv scoped({});
  DistributedEnv env = DistributedEnv::from_environment();
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_TRUE(env.master_addr.empty());
  EXPECT_TRUE(env.store_file.empty());
}

TEST(DistributedEnv, ReadsTorchrunsVariablesOrAStoreFile) {
  {
    ScopedEnv scoped({{"RANK", "2"},
                      {"WORLD_SIZE", "4"},
                      {"MASTER_ADDR", "10.0.0.1"},
                      {"MASTER_PORT", "29512"},
                      {"LVRL_DIST_TIMEOUT_S", "42"}});
    DistributedEnv env = DistributedEnv::from_environment();
    EXPECT_EQ(env.rank, 2);
    EXPECT_EQ(env.world_size, 4);
    EXPECT_EQ(env.master_addr, "10.0.0.1");
    EXPECT_EQ(env.master_port, 29512);
    EXPECT_EQ(env.timeout_s, 42);
  }
  ScopedEnv scoped({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LVRL_STORE_FILE", "/tmp/store"}});
  DistributedEnv env = DistributedEnv::from_environment();
  EXPECT_EQ(env.store_file, "/tmp/store");
  EXPECT_TRUE(env.master_addr.empty());
}

TEST(DistributedEnv, MalformedVariablesAreInputErrorsNamingThem) {
  expect_env_error({{"RANK", "one"}, {"WORLD_SIZE", "2"}}, "RANK", "one");
  expect_env_error({{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "WORLD_SIZE", "0");
  expect_env_error({{"RANK", "0"}, {"WORLD_SIZE", "2x"}}, "WORLD_SIZE", "2x");
  expect_env_error({{"RANK", "4"}, {"WORLD_SIZE", "4"}}, "RANK", "4");
  expect_env_error({{"RANK", "-1"}, {"WORLD_SIZE", "4"}}, "RANK", "-1");
  expect_env_error({{"RANK", "0"}}, "WORLD_SIZE", "");
  expect_env_error({{"WORLD_SIZE", "2"}}, "RANK", "");
  expect_env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500"}}, "MASTER_ADDR", "");
  expect_env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}, "MASTER_PORT", "");
  expect_env_error(
      {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "70000"}},
      "MASTER_PORT", "70000");
  expect_env_error({{"LVRL_DIST_TIMEOUT_S", "soon"}}, "LVRL_DIST_TIMEOUT_S", "soon");
}

void expect_shape_error(int world, MeshShape shape, const std::string& value, const std::string& problem) {
  DistributedEnv env;
  env.world_size = world;
  env.master_addr = "127.0.0.1";
  env.master_port = 1;  // never reached: the shape is checked first
  try {
    Mesh::create(env, shape, c10::Device(c10::kCPU));
    ADD_FAILURE() << "expected an InputError for " << value;
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "sp, ulysses, ring") << e.what();
    EXPECT_EQ(e.value(), value) << e.what();
    EXPECT_NE(e.problem().find(problem), std::string::npos) << e.what();
  }
}

TEST(Mesh, BadShapesAreInputErrorsNamingSpUlyssesRing) {
  expect_shape_error(4, {3, 0, 0}, "3, 0, 0", "sp = 3 does not divide the world size 4");
  expect_shape_error(1, {2, 0, 0}, "2, 0, 0", "does not divide the world size 1");
  expect_shape_error(4, {4, 3, 2}, "4, 3, 2", "ulysses × ring = 3 × 2 must equal sp = 4");
  expect_shape_error(4, {4, 3, 0}, "4, 3, 0", "ulysses = 3 does not divide sp = 4");
  expect_shape_error(4, {4, 0, 3}, "4, 0, 3", "ring = 3 does not divide sp = 4");
  expect_shape_error(4, {0, 0, 0}, "0, 0, 0", "expected sp ≥ 1");
}

// World size 1 (as `lvrl sp launch --nproc 1` starts it): no store, even with a master address that
// nothing listens on; every group is this process.
TEST(Mesh, OneProcessNeedsNoStore) {
  ScopedEnv scoped({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1"}});
  std::shared_ptr<Mesh> mesh = Mesh::create(DistributedEnv::from_environment(), {}, c10::Device(c10::kCPU));
  EXPECT_EQ(mesh->world_size(), 1);
  EXPECT_EQ(mesh->ulysses_size(), 1);
  EXPECT_EQ(mesh->ring_size(), 1);
  for (Kind kind : {Kind::World, Kind::Dp, Kind::Sp, Kind::Ulysses, Kind::Ring})
    check_group(*mesh, kind, 1, 1);
  // A second mesh in the same process is independent of the first.
  std::shared_ptr<Mesh> again = Mesh::create(DistributedEnv{}, {1, 1, 1}, c10::Device(c10::kCPU));
  check_group(*again, Kind::World, 1, 1);
}

// A one-process mesh on a CUDA device runs every group on NCCL (skipped without a device; one GPU
// cannot host two NCCL ranks, so the multi-rank paths are the Gloo tests above): the collectives move
// CUDA tensors, and sequence-parallel attention over it equals the local kernel on the same device.
TEST(MeshCuda, OneRankNcclGroupsRunCollectivesAndAttention) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  std::shared_ptr<Mesh> mesh = Mesh::create(DistributedEnv{}, {1, 1, 1}, cuda);
  for (Kind kind : {Kind::World, Kind::Dp, Kind::Sp, Kind::Ulysses, Kind::Ring}) {
    SCOPED_TRACE(kind_name(kind));
    c10d::ProcessGroup& group = group_of(*mesh, kind);
    EXPECT_EQ(group.getBackendName(), "nccl");
    ASSERT_EQ(group.getSize(), 1);
    const at::Tensor data = at::arange(12, at::TensorOptions().dtype(at::kFloat).device(cuda)).view({4, 3});
    at::Tensor reduced = data.clone();
    all_reduce_sum(group, reduced);
    EXPECT_TRUE(reduced.equal(data));
    EXPECT_TRUE(all_gather_cat(group, data, 1).equal(data));
    const at::Tensor moved = all_to_all(group, data, {4}, {4});
    EXPECT_TRUE(moved.is_cuda());
    EXPECT_TRUE(moved.equal(data));
    at::Tensor copy = data.clone();
    broadcast(group, copy, 0);
    EXPECT_TRUE(copy.equal(data));
  }

  for (SpMode mode : {SpMode::Ulysses, SpMode::Zigzag}) {
    SCOPED_TRACE(sp_mode_name(mode));
    SequenceParallelAttention attention(mesh, mode);
    attention.set_layout(SequenceLayout::make(mode, 1, 1, 100, /*causal=*/true));
    const int64_t length = attention.layout().local_length();
    auto leaf = [&](int64_t heads, uint64_t seed) {
      return at::randn({2, length, heads, 16}, at::detail::createCPUGenerator(seed), at::kDouble)
          .to(cuda)
          .requires_grad_();
    };
    at::Tensor q = leaf(8, 1), k = leaf(2, 2), v = leaf(2, 3);
    model::AttentionSpec spec;
    spec.mask = model::MaskKind::Causal;
    model::AttentionResult got = attention.forward(q, k, v, spec);
    at::Tensor dout = at::randn_like(got.out);
    auto grads = torch::autograd::grad({got.out}, {q, k, v}, {dout});
    model::AttentionResult want = model::make_blockwise_attention()->forward(q, k, v, spec);
    auto want_grads = torch::autograd::grad({want.out}, {q, k, v}, {dout});
    EXPECT_TRUE(got.out.is_cuda());
    EXPECT_LE(max_relative_difference(got.out, want.out), 1e-12);
    for (size_t i = 0; i < 3; ++i)
      EXPECT_LE(max_relative_difference(grads[i], want_grads[i]), 1e-12) << "gradient " << i;
  }
}

}  // namespace
}  // namespace lvrl::sp
