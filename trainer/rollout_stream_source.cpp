#include "trainer/rollout_stream_source.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>

#include "cache/rollout_file.h"
#include "core/error.h"
#include "core/log.h"
#include "sp/comm.h"

namespace lvrl::trainer {

namespace {

constexpr std::chrono::milliseconds kPoll{1000};

// Rank 0's bytes to every rank of the world (a length, then the bytes).
std::string broadcast_bytes(sp::Mesh& mesh, const std::string& bytes) {
  at::Tensor length = at::full({1}, static_cast<int64_t>(bytes.size()), at::kLong);
  sp::broadcast(mesh.world(), length, 0);
  at::Tensor data = at::empty({length.item<int64_t>()}, at::kByte);
  if (mesh.rank() == 0 && !bytes.empty()) std::memcpy(data.data_ptr(), bytes.data(), bytes.size());
  sp::broadcast(mesh.world(), data, 0);
  return std::string(reinterpret_cast<const char*>(data.data_ptr()), static_cast<size_t>(data.numel()));
}

}  // namespace

RolloutStreamSource::RolloutStreamSource(std::unique_ptr<cache::RolloutConsumer> consumer,
                                         cache::EmbeddingCache& cache, std::shared_ptr<sp::Mesh> mesh,
                                         int64_t max_staleness)
    : consumer_(std::move(consumer)), cache_(cache), mesh_(std::move(mesh)), max_staleness_(max_staleness) {
  LVRL_ASSERT((mesh_->rank() == 0) == (consumer_ != nullptr), "world rank 0 alone consumes the stream");
}

RolloutBatch RolloutStreamSource::next(int64_t wanted, DataCursor& /*cursor*/, const SourceContext& context) {
  RolloutBatch batch;
  std::vector<cache::RolloutGroup> taken;  // rank 0
  while (true) {
    if (consumer_) {
      for (cache::RolloutDelivery& delivery :
           consumer_->read(static_cast<size_t>(wanted - static_cast<int64_t>(taken.size())), kPoll)) {
        const std::string& id = delivery.record.group_id;
        if (trained_.erase(id) > 0) {  // trained before the checkpoint we resumed from
          consumer_->ack(delivery);
          continue;
        }
        if (delivery.record.policy_version < context.policy_version - max_staleness_) {
          LVRL_DEBUG("group {} of policy version {} is older than {} − {}: dropped", id,
                     delivery.record.policy_version, context.policy_version, max_staleness_);
          consumer_->ack(delivery);
          ++batch.stale_dropped;
          continue;
        }
        taken.push_back(delivery.record);
        unacknowledged_.emplace(id, std::move(delivery));
      }
    }
    // Every rank: how many so far; rank 0 decides.
    at::Tensor count = at::full({1}, static_cast<int64_t>(taken.size()), at::kLong);
    sp::broadcast(mesh_->world(), count, 0);
    if (count.item<int64_t>() >= wanted) break;
    if (context.stop_requested && context.stop_requested()) break;
  }
  at::Tensor stale = at::full({1}, batch.stale_dropped, at::kLong);
  sp::broadcast(mesh_->world(), stale, 0);
  batch.stale_dropped = stale.item<int64_t>();
  // The groups, packed once on rank 0.
  std::string packed;
  if (consumer_) {
    for (const cache::RolloutGroup& group : taken) {
      const std::string record = cache::pack_fields(cache::encode_rollout(group));
      packed += fmt::format("{:016x}", record.size()) + record;
    }
  }
  const std::string received = broadcast_bytes(*mesh_, packed);
  for (size_t at = 0; at < received.size();) {
    const size_t length = std::stoull(received.substr(at, 16), nullptr, 16);
    batch.groups.push_back(cache::decode_rollout(
        cache::unpack_fields(std::string_view(received).substr(at + 16, length), "rank 0")));
    at += 16 + length;
  }
  attach_video_rows(batch, cache_, "the rollout stream");
  return batch;
}

void RolloutStreamSource::acknowledge(const std::vector<std::string>& group_ids) {
  if (!consumer_) return;
  for (const std::string& id : group_ids) {
    auto found = unacknowledged_.find(id);
    if (found == unacknowledged_.end()) continue;  // acknowledged already (a second save of a step)
    consumer_->ack(found->second);
    unacknowledged_.erase(found);
  }
}

void RolloutStreamSource::already_trained(const std::vector<std::string>& group_ids) {
  if (consumer_) trained_.insert(group_ids.begin(), group_ids.end());
}

}  // namespace lvrl::trainer
