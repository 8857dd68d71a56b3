// RUN/ledger.jsonl: one line per trained answer, {"rollout_id", "group_id", "policy_version", "step"}
// — the evidence that training was exactly-once (docs/trainer.md#the-ledger). The rollout id is
// "<group_id>/<answer index>". Written by rank 0 and flushed per step; a resumed run first drops the
// lines of steps past its checkpoint (those steps are trained again, maybe on other groups).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cache/rollout_record.h"

namespace lvrl::trainer {

struct LedgerLine {
  std::string rollout_id, group_id;
  int64_t policy_version = 0;
  int64_t step = 0;
};

class Ledger {
 public:
  // Opens RUN/ledger.jsonl for appending after dropping the lines of steps > `resumed_step`.
  Ledger(const std::string& run_dir, int64_t resumed_step);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // The answers of `groups`, trained at optimizer step `step`.
  void record(int64_t step, const std::vector<cache::RolloutGroup>& groups);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Every line of a ledger (InputError naming the file and line for one that is not a ledger line).
std::vector<LedgerLine> read_ledger(const std::string& path);

}  // namespace lvrl::trainer
