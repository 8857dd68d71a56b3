// Process groups for sequence parallelism: rendezvous, the DP × SP device mesh with SP = U × R
// (Ulysses degree × ring degree), and the sub-groups each algorithm talks over.
//
// Rank layout (torchrun's convention for the environment; ranks are processes):
//   rank = dp_index · SP + sp_index,   sp_index = ring_index · U + ulysses_index
// so a Ulysses group is U consecutive ranks (one node's fast links when U ≤ GPUs per node) and a
// ring group is R ranks strided by U. Each group rendezvouses under its own store prefix, so a rank
// creates only the groups it belongs to (one of each kind, in the same order on every rank).
//
// Rendezvous: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT → a TCPStore (rank 0 hosts it), or
// LVRL_STORE_FILE → a FileStore (local tests: a fresh temp file, never a fixed port);
// LVRL_DIST_TIMEOUT_S sets timeout_s. Gloo on CPU (bound to 127.0.0.1 when MASTER_ADDR is loopback or
// unset, else to this host's address, or to LVRL_GLOO_HOST), NCCL when the device is CUDA. A process
// may create several meshes (collectively, in the same order on every rank); they share the store.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/intrusive_ptr.h>

#include <memory>
#include <string>

namespace c10d {
class ProcessGroup;
class Store;
}  // namespace c10d

namespace lvrl::sp {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  std::string master_addr;  // TCPStore host (empty with a store file)
  int master_port = 0;
  std::string store_file;  // FileStore path (empty with a TCP master)
  int timeout_s = 300;     // rendezvous and collective timeout
  // From the environment; missing or malformed variables are InputErrors naming the variable.
  // A single process with none of them set is rank 0 of 1 (no store needed).
  static DistributedEnv from_environment();
};

struct MeshShape {
  int sp = 1;       // sequence-parallel degree; world_size % sp == 0, dp = world_size / sp
  int ulysses = 0;  // U; 0 = sp (pure Ulysses) unless ring is given
  int ring = 0;     // R; 0 = sp / ulysses. U × R must equal sp (InputError naming the three)
};

class Mesh {
 public:
  // Collective over all ranks of `env`: creates the store, the world group and every sub-group.
  static std::shared_ptr<Mesh> create(const DistributedEnv& env, MeshShape shape, const c10::Device& device);

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int dp_rank() const { return rank_ / sp_; }
  int dp_size() const { return world_size_ / sp_; }
  int sp_rank() const { return rank_ % sp_; }
  int sp_size() const { return sp_; }
  int ulysses_rank() const { return sp_rank() % ulysses_; }
  int ulysses_size() const { return ulysses_; }
  int ring_rank() const { return sp_rank() / ulysses_; }
  int ring_size() const { return ring_; }
  const c10::Device& device() const { return device_; }

  c10d::ProcessGroup& world() const { return *world_; }
  c10d::ProcessGroup& dp() const { return *dp_; }        // ranks with the same sp_index
  c10d::ProcessGroup& sp() const { return *sp_group_; }  // ranks with the same dp_index
  c10d::ProcessGroup& ulysses() const { return *ulysses_group_; }
  c10d::ProcessGroup& ring() const { return *ring_group_; }

 private:
  Mesh() = default;
  int rank_ = 0, world_size_ = 1, sp_ = 1, ulysses_ = 1, ring_ = 1;
  c10::Device device_ = c10::Device(c10::kCPU);
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> world_, dp_, sp_group_, ulysses_group_, ring_group_;
};

}  // namespace lvrl::sp
