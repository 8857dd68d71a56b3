// The trainer's rollout groups from the rollout stream that `lvrl rollout` workers feed
// (cache/rollout_stream.h; docs/trainer.md#rollout-sources):
//  - world rank 0 is the stream's only consumer: it reads, drops groups older than the staleness
//    bound (policy_version < trainer version − rollout.max_staleness; acknowledged and counted: the
//    rollout side regenerates them) and hands the groups to every rank as packed records (a broadcast);
//  - ranks never wait for rollouts inside a collective: rank 0 polls the stream for at most a second
//    at a time, then every rank takes part in one small broadcast ("how many so far, stop?"), so a slow
//    rollout never trips the collective timeout and a stop request is seen while waiting;
//  - acknowledge() XACKs only when the checkpoint holding the groups is durable (run_rl calls it after
//    each save), so a crashed trainer's unsaved groups come back to it (its pending entries) and are
//    trained again; already_trained() groups (saved but never acknowledged) are acknowledged when they
//    come back, never trained twice. The stream de-duplicates repeats of a group id.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "cache/embedding_cache.h"
#include "cache/rollout_stream.h"
#include "sp/mesh.h"
#include "trainer/rollout_source.h"

namespace lvrl::trainer {

class RolloutStreamSource : public RolloutSource {
 public:
  // consumer: world rank 0's (null on every other rank).
  RolloutStreamSource(std::unique_ptr<cache::RolloutConsumer> consumer, cache::EmbeddingCache& cache,
                      std::shared_ptr<sp::Mesh> mesh, int64_t max_staleness);
  RolloutBatch next(int64_t wanted, DataCursor& cursor, const SourceContext& context) override;
  int64_t size() const override { return -1; }
  void acknowledge(const std::vector<std::string>& group_ids) override;
  void already_trained(const std::vector<std::string>& group_ids) override;

 private:
  std::unique_ptr<cache::RolloutConsumer> consumer_;
  cache::EmbeddingCache& cache_;
  std::shared_ptr<sp::Mesh> mesh_;
  int64_t max_staleness_;
  std::map<std::string, cache::RolloutDelivery> unacknowledged_;  // rank 0: handed out, by group id
  std::set<std::string> trained_;                                 // rank 0: acknowledge on sight
};

}  // namespace lvrl::trainer
