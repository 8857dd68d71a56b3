// The collectives SP needs, on a c10d process group, with their byte counts recorded so
// measurements can be checked against docs/sp.md's volume formulas. Every call waits for its
// work (errors surface here through LVRL_C10D_CHECK, naming the operation).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <vector>

namespace c10d {
class ProcessGroup;
}

namespace lvrl::sp {

// Bytes this process sent (payload only) since the last reset, summed over all groups.
int64_t bytes_sent();
void reset_bytes_sent();

// all-to-all of dimension-0 slices: input [Σ send_sizes, ...] → output [Σ recv_sizes, ...].
at::Tensor all_to_all(c10d::ProcessGroup& group, const at::Tensor& input,
                      const std::vector<int64_t>& send_sizes, const std::vector<int64_t>& recv_sizes);
at::Tensor all_gather_cat(c10d::ProcessGroup& group, const at::Tensor& input, int64_t dim);  // equal sizes
void all_reduce_sum(c10d::ProcessGroup& group, at::Tensor& tensor);
// root's `tensor` → every rank's `tensor`, in place (same shape and dtype on every rank, contiguous).
void broadcast(c10d::ProcessGroup& group, at::Tensor& tensor, int root);

// One ring step: sends `send` to (rank + 1) % P and returns what (rank − 1) % P sent, shape `like`.
// Posted as a non-blocking pair, so no send order can deadlock; `tag` separates concurrent transfers.
class RingExchange {
 public:
  RingExchange(c10d::ProcessGroup& group, const at::Tensor& send, const at::Tensor& like, int tag);
  at::Tensor wait();  // the received tensor

 private:
  struct Pending;
  std::shared_ptr<Pending> pending_;
};

}  // namespace lvrl::sp
