// A reward computed by the user's own program (`reward.external`): started once through /bin/sh -c,
// fed one JSON object per line on its stdin ({"response", "answer", "options", "problem_type"}),
// answering one number per line on its stdout, in order. The program must flush after each line (awk:
// fflush(); Python: print(..., flush=True)) and must not wait for a full input block (mawk needs
// -W interactive): lines are written ahead of the answers, but nothing closes its input until the
// model goes.
//
// Its stdin and stdout are one Unix socket, written with MSG_NOSIGNAL: a program that dies makes a
// clear error, never a SIGPIPE. Its stderr is ours. When it exits, closes its output, answers
// something that is not a finite number, or stays silent past the timeout, scoring stops with an
// InputError naming the command, its exit status and the line it choked on.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "rollout/reward.h"

namespace lvrl::rollout {

class ExternalReward : public RewardFunction {
 public:
  // `source`: where the command was configured (the config file), for errors.
  ExternalReward(std::string command, double timeout_s, std::string source = "");
  ~ExternalReward() override;  // closes its input, waits 2 s for it to exit, then kills its group
  ExternalReward(const ExternalReward&) = delete;
  ExternalReward& operator=(const ExternalReward&) = delete;

  std::string name() const override { return "external"; }
  double score(const RewardInput& input) override;
  std::vector<double> score_batch(const std::vector<RewardInput>& inputs) override;

 private:
  [[noreturn]] void fail(const std::string& problem);
  [[noreturn]] void fail_ended(int64_t line);  // it exited or closed its output before answering `line`
  double parse_answer(const std::string& line_text, int64_t line);
  void stop(double grace_s);  // closes its input; kills its group if it has not exited after grace_s

  std::string command_;
  double timeout_s_;
  std::string source_;
  pid_t pid_ = -1;
  int socket_ = -1;
  std::string pending_;     // bytes read past the last complete answer line
  int64_t lines_sent_ = 0;  // over the process's life: answers name their line by this count
  std::string failure_;     // once it has failed, every later call repeats why
};

}  // namespace lvrl::rollout
