// Rendezvous and the DP × SP (= U × R) mesh of process groups.
//
// Every group gets its own PrefixStore over the one store ("<n>/world", "<n>/dp/<i>", "<n>/sp/<i>",
// "<n>/uly/<i>", "<n>/ring/<i>"), so groups rendezvous independently and a rank creates only the
// groups it belongs to. The kinds are created in the same order on every rank (world, dp, sp,
// ulysses, ring) and every rank is in exactly one group of each kind, so each step's rendezvous
// completes once the previous one has. <n> counts Mesh::create calls in this process (a collective,
// so the same on every rank): a second mesh never meets the first one's stale keys. The store itself
// is made once per endpoint and process and reused (rank 0 could not host a second TCPStore on the
// same port). Groups of one rank, and the whole world of one process, use an in-process HashStore.
#ifndef USE_C10D_GLOO  // Torch's CMake config defines it; the c10d headers hide the Gloo group without it
#define USE_C10D_GLOO 1
#endif

#include "sp/mesh.h"

#include <torch/version.h>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef LVRL_WITH_CUDA
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/log.h"

namespace lvrl::sp {
namespace {

std::optional<std::string> variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

int parse_int_variable(const char* name, const std::string& value, int min, int max) {
  errno = 0;
  char* end = nullptr;
  long parsed = std::strtol(value.c_str(), &end, 10);
  if (errno != 0 || end == value.c_str() || *end != '\0' || parsed < min || parsed > max) {
    throw InputError({"", 0, name, value},
                     fmt::format("environment variable {} must be an integer in [{}, {}]", name, min, max));
  }
  return static_cast<int>(parsed);
}

bool is_loopback(const std::string& host) {
  return host.empty() || host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// sp, ulysses, ring with the zeros filled in; InputErrors name the three.
MeshShape resolve_shape(MeshShape shape, int world_size) {
  auto where = [&] {
    return InputWhere{"", 0, "sp, ulysses, ring",
                      fmt::format("{}, {}, {}", shape.sp, shape.ulysses, shape.ring)};
  };
  if (shape.sp < 1 || shape.ulysses < 0 || shape.ring < 0) {
    throw InputError(where(), "expected sp ≥ 1 and ulysses, ring ≥ 0 (0 = derived)");
  }
  if (world_size % shape.sp != 0) {
    throw InputError(where(), fmt::format("sp = {} does not divide the world size {}", shape.sp, world_size));
  }
  MeshShape out = shape;
  if (out.ulysses == 0 && out.ring == 0) {
    out.ulysses = out.sp;
    out.ring = 1;
  } else if (out.ring == 0) {
    if (out.sp % out.ulysses != 0) {
      throw InputError(where(), fmt::format("ulysses = {} does not divide sp = {}", out.ulysses, out.sp));
    }
    out.ring = out.sp / out.ulysses;
  } else if (out.ulysses == 0) {
    if (out.sp % out.ring != 0) {
      throw InputError(where(), fmt::format("ring = {} does not divide sp = {}", out.ring, out.sp));
    }
    out.ulysses = out.sp / out.ring;
  }
  if (out.ulysses * out.ring != out.sp) {
    throw InputError(
        where(), fmt::format("ulysses × ring = {} × {} must equal sp = {}", out.ulysses, out.ring, out.sp));
  }
  return out;
}

std::string store_endpoint(const DistributedEnv& env) {
  return env.store_file.empty() ? fmt::format("tcp://{}:{}", env.master_addr, env.master_port)
                                : "file://" + env.store_file;
}

// One store per endpoint and process, kept for the process's life (leaked: a TCPStore's server
// thread must outlive every group that might still touch the store at exit).
c10::intrusive_ptr<c10d::Store> shared_store(const DistributedEnv& env) {
  static std::mutex mutex;
  static auto* stores = new std::map<std::string, c10::intrusive_ptr<c10d::Store>>();
  std::lock_guard<std::mutex> lock(mutex);
  const std::string endpoint = store_endpoint(env);
  auto found = stores->find(endpoint);
  if (found != stores->end()) return found->second;
  c10::intrusive_ptr<c10d::Store> store;
  if (!env.store_file.empty()) {
    LVRL_C10D_CHECK(store = c10::make_intrusive<c10d::FileStore>(env.store_file, env.world_size));
  } else {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<std::size_t>(env.world_size);
    options.waitWorkers = true;
    options.timeout = std::chrono::seconds(env.timeout_s);
    LVRL_C10D_CHECK(store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options));
  }
  store->setTimeout(std::chrono::seconds(env.timeout_s));
  (*stores)[endpoint] = store;
  return store;
}

int next_generation() {
  static std::atomic<int> generation{0};
  return generation++;
}

// The group the mesh hands out. Torch 1.13: the Gloo / NCCL group itself. Torch 2 splits ProcessGroup
// (the front) from Backend (Gloo, NCCL), so the backend is registered on a front for its device type.
// The torch-2 path is not compiled here (the CPU build is 1.13); ProcessGroup's constructor took
// Options until 2.5 (from the upstream headers): check on the GPU machine.
template <typename Group>
c10::intrusive_ptr<c10d::ProcessGroup> front(c10::intrusive_ptr<Group> backend,
                                             const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                             const std::string& name, c10::DeviceType device_type,
                                             std::chrono::milliseconds timeout) {
#if TORCH_VERSION_MAJOR >= 2
  const auto type = c10d::ProcessGroup::strToBackendType(name);
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 6
  auto options = c10::make_intrusive<c10d::ProcessGroup::Options>(name, timeout);
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size, options);
#else
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
#endif
  group->setDefaultBackend(type);
  group->setBackend(device_type, type, backend);
  return group;
#else
  (void)store, (void)rank, (void)size, (void)name, (void)device_type, (void)timeout;
  return backend;
#endif
}

// Makes the groups of one mesh: the backend for the device, one Gloo transport device shared by all.
class GroupFactory {
 public:
  GroupFactory(const DistributedEnv& env, const c10::Device& device) : env_(env), device_(device) {
    if (device.is_cuda()) {
#ifndef LVRL_WITH_CUDA
      throw InputError({"", 0, "device", device.str()},
                       "this build has no CUDA/NCCL support (LVRL_CUDA=OFF)");
#endif
      return;
    }
    if (!device.is_cpu()) {
      throw InputError({"", 0, "device", device.str()},
                       "process groups need a cpu (Gloo) or cuda (NCCL) device");
    }
    std::optional<std::string> host = variable("LVRL_GLOO_HOST");
    if (!host && is_loopback(env.master_addr)) host = "127.0.0.1";
    if (host) {
      LVRL_C10D_CHECK(gloo_device_ = c10d::ProcessGroupGloo::createDeviceForHostname(*host));
    } else {
      LVRL_C10D_CHECK(gloo_device_ = c10d::ProcessGroupGloo::createDefaultDevice());
    }
  }

  // `store` already carries the group's prefix; groups of one rank ignore it.
  c10::intrusive_ptr<c10d::ProcessGroup> make(c10::intrusive_ptr<c10d::Store> store, int rank,
                                              int size) const {
    if (size == 1) store = c10::make_intrusive<c10d::HashStore>();
    const auto timeout = std::chrono::milliseconds(int64_t{env_.timeout_s} * 1000);
#ifdef LVRL_WITH_CUDA
    if (device_.is_cuda()) {  // untested: no GPU in the CPU build's tests
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
      LVRL_C10D_CHECK(nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options));
      return front(nccl, store, rank, size, "nccl", c10::kCUDA, timeout);
    }
#endif
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices = {gloo_device_};
    c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
    LVRL_C10D_CHECK(gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options));
    return front(gloo, store, rank, size, "gloo", c10::kCPU, timeout);
  }

 private:
  DistributedEnv env_;
  c10::Device device_;
  std::shared_ptr<::gloo::transport::Device> gloo_device_;
};
}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv env;
  std::optional<std::string> rank = variable("RANK"), world = variable("WORLD_SIZE");
  if (rank.has_value() != world.has_value()) {
    const char* missing = rank ? "WORLD_SIZE" : "RANK";
    const char* present = rank ? "RANK" : "WORLD_SIZE";
    throw InputError({"", 0, missing, ""},
                     fmt::format("environment variable {} is not set, but {} is", missing, present));
  }
  if (world) {
    env.world_size = parse_int_variable("WORLD_SIZE", *world, 1, INT_MAX);
    env.rank = parse_int_variable("RANK", *rank, 0, env.world_size - 1);
  }
  if (auto timeout = variable("LVRL_DIST_TIMEOUT_S")) {
    env.timeout_s = parse_int_variable("LVRL_DIST_TIMEOUT_S", *timeout, 1, 7 * 24 * 3600);
  }
  if (auto file = variable("LVRL_STORE_FILE")) {
    env.store_file = *file;
    return env;
  }
  std::optional<std::string> addr = variable("MASTER_ADDR"), port = variable("MASTER_PORT");
  if (env.world_size > 1 && !addr) {
    throw InputError(
        {"", 0, "MASTER_ADDR", ""},
        fmt::format("environment variable MASTER_ADDR is not set (WORLD_SIZE = {}); set MASTER_ADDR "
                    "and MASTER_PORT, or LVRL_STORE_FILE",
                    env.world_size));
  }
  if (env.world_size > 1 && !port) {
    throw InputError(
        {"", 0, "MASTER_PORT", ""},
        fmt::format("environment variable MASTER_PORT is not set (WORLD_SIZE = {})", env.world_size));
  }
  if (addr) env.master_addr = *addr;
  if (port) env.master_port = parse_int_variable("MASTER_PORT", *port, 1, 65535);
  return env;
}

std::shared_ptr<Mesh> Mesh::create(const DistributedEnv& env, MeshShape shape, const c10::Device& device) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    throw InputError({"", 0, "RANK, WORLD_SIZE", fmt::format("{}, {}", env.rank, env.world_size)},
                     "expected 0 ≤ RANK < WORLD_SIZE");
  }
  if (env.timeout_s < 1) {
    throw InputError({"", 0, "timeout_s", std::to_string(env.timeout_s)}, "expected a positive timeout");
  }
  MeshShape resolved = resolve_shape(shape, env.world_size);
  std::shared_ptr<Mesh> mesh(new Mesh());
  mesh->rank_ = env.rank;
  mesh->world_size_ = env.world_size;
  mesh->sp_ = resolved.sp;
  mesh->ulysses_ = resolved.ulysses;
  mesh->ring_ = resolved.ring;
  mesh->device_ = device;

  const Mesh& m = *mesh;
  if (env.world_size == 1) {
    mesh->store_ = c10::make_intrusive<c10d::HashStore>();
  } else {
    if (env.store_file.empty() &&
        (env.master_addr.empty() || env.master_port < 1 || env.master_port > 65535)) {
      throw InputError(
          {"", 0, "MASTER_ADDR, MASTER_PORT", fmt::format("{}, {}", env.master_addr, env.master_port)},
          "a world of several ranks needs a TCPStore address and port (or LVRL_STORE_FILE)");
    }
    mesh->store_ = shared_store(env);
  }
  const std::string generation = std::to_string(next_generation());
  auto prefixed = [&](const std::string& name) -> c10::intrusive_ptr<c10d::Store> {
    return c10::make_intrusive<c10d::PrefixStore>(generation + "/" + name, mesh->store_);
  };
  GroupFactory factory(env, device);
  const int dp_index = m.dp_rank(), sp_index = m.sp_rank();
  mesh->world_ = factory.make(prefixed("world"), m.rank(), m.world_size());
  mesh->dp_ = factory.make(prefixed(fmt::format("dp/{}", sp_index)), dp_index, m.dp_size());
  mesh->sp_group_ = factory.make(prefixed(fmt::format("sp/{}", dp_index)), sp_index, m.sp_size());
  mesh->ulysses_group_ =
      factory.make(prefixed(fmt::format("uly/{}", dp_index * m.ring_size() + m.ring_rank())),
                   m.ulysses_rank(), m.ulysses_size());
  mesh->ring_group_ =
      factory.make(prefixed(fmt::format("ring/{}", dp_index * m.ulysses_size() + m.ulysses_rank())),
                   m.ring_rank(), m.ring_size());
  LVRL_DEBUG("mesh: rank {}/{} dp {}/{} sp {}/{} (ulysses {}/{}, ring {}/{}) on {}", m.rank(), m.world_size(),
             dp_index, m.dp_size(), sp_index, m.sp_size(), m.ulysses_rank(), m.ulysses_size(), m.ring_rank(),
             m.ring_size(), device.str());
  return mesh;
}

}  // namespace lvrl::sp
