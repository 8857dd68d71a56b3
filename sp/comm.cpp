// The SP collectives on c10d, each waited for, each adding the payload bytes this process sends to
// one process-wide counter:
//   all_to_all      the slices sent to other ranks (the slice kept locally crosses no link)
//   all_gather_cat  (P − 1) × own bytes
//   all_reduce_sum  what a ring all-reduce sends: ⌊2(P − 1) × bytes / P⌋ (reduce-scatter + all-gather)
//   broadcast       the root: (P − 1) × bytes; the others nothing (the algorithm may relay)
//   ring exchange   the tensor's bytes
// Groups of one rank communicate nothing (and count nothing); their results are copies.
#include "sp/comm.h"

#include <atomic>
#include <functional>
#include <numeric>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "core/error.h"

namespace lvrl::sp {
namespace {
std::atomic<int64_t> g_bytes_sent{0};

int64_t tensor_bytes(const at::Tensor& t) {
  return t.numel() * static_cast<int64_t>(t.element_size());
}

}  // namespace

int64_t bytes_sent() {
  return g_bytes_sent.load();
}
void reset_bytes_sent() {
  g_bytes_sent = 0;
}

at::Tensor all_to_all(c10d::ProcessGroup& group, const at::Tensor& input,
                      const std::vector<int64_t>& send_sizes, const std::vector<int64_t>& recv_sizes) {
  const int size = group.getSize(), rank = group.getRank();
  LVRL_ASSERT(static_cast<int>(send_sizes.size()) == size && static_cast<int>(recv_sizes.size()) == size,
              "all_to_all: one send and one receive size per rank");
  LVRL_ASSERT(input.dim() >= 1, "all_to_all: slices are along dimension 0");
  const int64_t sent_rows = std::accumulate(send_sizes.begin(), send_sizes.end(), int64_t{0});
  const int64_t received_rows = std::accumulate(recv_sizes.begin(), recv_sizes.end(), int64_t{0});
  LVRL_ASSERT(sent_rows == input.size(0), "all_to_all: send sizes must add up to input.size(0)");
  if (size == 1) return input.clone();

  std::vector<int64_t> output_shape = input.sizes().vec();
  output_shape[0] = received_rows;
  at::Tensor output = at::empty(output_shape, input.options());
  const int64_t row_bytes =
      static_cast<int64_t>(input.element_size()) *
      std::accumulate(output_shape.begin() + 1, output_shape.end(), int64_t{1}, std::multiplies<int64_t>());
  at::Tensor in = input.contiguous();
  std::vector<int64_t> in_counts = send_sizes, out_counts = recv_sizes;
  c10::intrusive_ptr<c10d::Work> work;
  LVRL_C10D_CHECK(work = group.alltoall_base(output, in, out_counts, in_counts));
  LVRL_C10D_CHECK(work->wait());
  g_bytes_sent += (sent_rows - send_sizes[rank]) * row_bytes;
  return output;
}

at::Tensor all_gather_cat(c10d::ProcessGroup& group, const at::Tensor& input, int64_t dim) {
  const int size = group.getSize();
  if (size == 1) return input.clone();
  std::vector<at::Tensor> inputs = {input.contiguous()};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size; ++r)
    outputs[0].push_back(at::empty_like(inputs[0], at::MemoryFormat::Contiguous));
  c10::intrusive_ptr<c10d::Work> work;
  LVRL_C10D_CHECK(work = group.allgather(outputs, inputs));
  LVRL_C10D_CHECK(work->wait());
  g_bytes_sent += (size - 1) * tensor_bytes(input);
  return at::cat(outputs[0], dim);
}

void all_reduce_sum(c10d::ProcessGroup& group, at::Tensor& tensor) {
  const int size = group.getSize();
  if (size == 1) return;
  std::vector<at::Tensor> tensors = {tensor.is_contiguous() ? tensor : tensor.contiguous()};
  c10::intrusive_ptr<c10d::Work> work;
  LVRL_C10D_CHECK(work = group.allreduce(tensors));
  LVRL_C10D_CHECK(work->wait());
  if (!tensors[0].is_same(tensor)) tensor.copy_(tensors[0]);
  g_bytes_sent += 2 * (size - 1) * tensor_bytes(tensor) / size;
}

void broadcast(c10d::ProcessGroup& group, at::Tensor& tensor, int root) {
  const int size = group.getSize();
  LVRL_ASSERT(root >= 0 && root < size, "broadcast: root outside the group");
  LVRL_ASSERT(tensor.is_contiguous(), "broadcast: the tensor is received in place, so it must be contiguous");
  if (size == 1) return;
  std::vector<at::Tensor> tensors = {tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  c10::intrusive_ptr<c10d::Work> work;
  LVRL_C10D_CHECK(work = group.broadcast(tensors, options));
  LVRL_C10D_CHECK(work->wait());
  if (group.getRank() == root) g_bytes_sent += (size - 1) * tensor_bytes(tensor);
}

struct RingExchange::Pending {
  std::vector<at::Tensor> send, recv;  // held until both transfers are done
  c10::intrusive_ptr<c10d::Work> send_work, recv_work;
  bool done = false;
};

RingExchange::RingExchange(c10d::ProcessGroup& group, const at::Tensor& send, const at::Tensor& like, int tag)
    : pending_(std::make_shared<Pending>()) {
  const int size = group.getSize(), rank = group.getRank();
  LVRL_ASSERT(send.scalar_type() == like.scalar_type(), "RingExchange: send and like differ in dtype");
  if (size == 1) {  // the ring is this rank: what it "receives" is what it sent
    LVRL_ASSERT(send.sizes() == like.sizes(),
                "RingExchange: one rank sends itself a tensor shaped like `like`");
    pending_->recv = {send.clone()};
    pending_->done = true;
    return;
  }
  pending_->send = {send.contiguous()};
  pending_->recv = {at::empty(like.sizes(), like.options().memory_format(at::MemoryFormat::Contiguous))};
  // Both posted before either is waited for: the receive first, so the peer's send always has a
  // matching receive, whatever order the ranks arrive in.
  LVRL_C10D_CHECK(pending_->recv_work = group.recv(pending_->recv, (rank + size - 1) % size, tag));
  LVRL_C10D_CHECK(pending_->send_work = group.send(pending_->send, (rank + 1) % size, tag));
  g_bytes_sent += tensor_bytes(send);
}

at::Tensor RingExchange::wait() {
  LVRL_ASSERT(pending_ != nullptr, "RingExchange::wait on a moved-from exchange");
  if (!pending_->done) {
    LVRL_C10D_CHECK(pending_->send_work->wait());
    LVRL_C10D_CHECK(pending_->recv_work->wait());
    pending_->send.clear();
    pending_->done = true;
  }
  return pending_->recv[0];
}

}  // namespace lvrl::sp
