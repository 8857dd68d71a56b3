// Multi-rank tests as real processes on Gloo, through sp::run_on_ranks (sp/rank_run.h, the same
// ranks `lvrl sp check` and bench_sp_attention run): the test binary re-executes itself as P ranks,
// each running one worker TEST, which is skipped when ctest runs it directly.
//
//   TEST(MyWorker, Attention) {                 // a rank
//     LVRL_RANK_WORKER_ONLY();
//     auto mesh = lvrl::sp::Mesh::create(lvrl::sp::DistributedEnv::from_environment(), {...}, c10::kCPU);
//     EXPECT_...;                                // a failed expectation fails the rank, hence the run
//     lvrl::test::write_result("max error 1e-7");
//   }
//   TEST(My, AttentionOnFourRanks) {
//     RankRun run = run_ranks(4, "MyWorker.Attention", {{"MY_CASE", "causal"}});
//     ASSERT_TRUE(ranks_succeeded(run));         // exit code 0 and every rank reached its worker body
//     EXPECT_EQ(run.results[0], "max error 1e-7");
//   }
//
// Ranks inherit the test's environment plus `env`; they rendezvous over a FileStore in the run's
// own directory (RankRunOptions::tcp_rendezvous for the launcher's TCPStore) and run with one
// intra-op thread.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace lvrl::test {

struct RankRun {
  int exit_code = -1;                // the launch's exit code (the first failing rank's)
  bool timed_out = false;            // stopped at the time limit
  std::string output;                // stdout and stderr of every rank, interleaved
  std::vector<std::string> results;  // [nproc] what each rank wrote with write_result
  std::vector<bool> ran;             // [nproc] whether the rank reached LVRL_RANK_WORKER_ONLY()
};

struct RankRunSettings {
  double timeout_s = 60;
  bool tcp_rendezvous = false;  // MASTER_ADDR/MASTER_PORT from the launcher instead of a FileStore
};

// Runs `worker_test` ("Suite.Name", a gtest filter) of this test binary as `nproc` ranks.
RankRun run_ranks(int nproc, const std::string& worker_test,
                  const std::map<std::string, std::string>& env = {}, const RankRunSettings& settings = {});

// exit code 0 and every rank ran its worker; otherwise a failure carrying the whole output.
::testing::AssertionResult ranks_succeeded(const RankRun& run);

// In a rank: true when this process was started by run_ranks.
bool is_worker();
// In a rank: called by LVRL_RANK_WORKER_ONLY(); one intra-op thread, marks the rank as having run.
void enter_worker();
// In a rank: "rank N of P".
std::string rank_label();
// In a rank: appends `text` to this rank's result.
void write_result(const std::string& text);
// In a rank: a variable run_ranks passed in `env` (a test failure when missing or not an integer).
std::string worker_env(const std::string& name);
int worker_env_int(const std::string& name);

}  // namespace lvrl::test

// First statement of a worker TEST: skips it outside run_ranks; inside, sets up the rank and labels
// every failure of the test with "rank N of P".
#define LVRL_RANK_WORKER_ONLY()                                               \
  if (!::lvrl::test::is_worker()) GTEST_SKIP() << "a rank of run_ranks only"; \
  ::lvrl::test::enter_worker();                                               \
  SCOPED_TRACE(::lvrl::test::rank_label())
