// Multi-rank tests as real processes on Gloo: the test binary re-executes itself as P ranks under
// `lvrl sp launch`, each rank running one worker TEST.
//
//   TEST(MyWorker, Attention) {            // a rank: skipped when ctest runs it directly
//     LVRL_SP_WORKER_ONLY();
//     auto mesh = lvrl::sp::Mesh::create(lvrl::sp::DistributedEnv::from_environment(), {...}, c10::kCPU);
//     EXPECT_...;                            // a failed expectation fails the rank, hence the run
//     lvrl::testing_sp::write_result("max error 1e-7");
//   }
//   TEST(My, AttentionOnFourRanks) {
//     RankRun run = run_ranks(4, "MyWorker.Attention", {{"MY_CASE", "causal"}});
//     ASSERT_TRUE(ranks_succeeded(run));     // exit code 0 and every rank reached its worker body
//     EXPECT_EQ(run.results[0], "max error 1e-7");
//   }
//
// Ranks inherit the test's environment plus `env`, LVRL_SP_WORKER=1 and LVRL_SP_RESULT_DIR (a fresh
// temporary directory, removed after the run). Each runs with one intra-op thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace lvrl::testing_sp {

struct RankRun {
  int exit_code = -1;                // lvrl sp launch's exit code; -1 when it ran past the timeout
  std::string output;                // stdout and stderr of the launcher and every rank, interleaved
  std::vector<std::string> results;  // [nproc] what each rank wrote with write_result
  std::vector<bool> ran;             // [nproc] whether the rank reached LVRL_SP_WORKER_ONLY()
};

// Runs `worker_test` ("Suite.Name", a gtest filter) of this test binary as `nproc` ranks.
RankRun run_ranks(int nproc, const std::string& worker_test, const std::map<std::string, std::string>& env = {},
                  double timeout_s = 60);

// exit code 0 and every rank ran its worker; otherwise a failure carrying the whole output.
::testing::AssertionResult ranks_succeeded(const RankRun& run);

// In a rank: true when this process was started by run_ranks.
bool is_worker();
// In a rank: called by LVRL_SP_WORKER_ONLY(); one intra-op thread, marks the rank as having run.
void enter_worker();
// In a rank: "rank N of P".
std::string rank_label();
// In a rank: appends `text` to this rank's result.
void write_result(const std::string& text);
// In a rank: a variable run_ranks passed in `env` (a test failure when missing or not an integer).
std::string worker_env(const std::string& name);
int worker_env_int(const std::string& name);

// A child process with stdout and stderr captured to a file; killed (SIGKILL) if still running when
// destroyed.
class Process {
 public:
  // argv[0] is a path or a name in PATH; the environment is the caller's plus `env`.
  explicit Process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // The exit code (128 + signal when killed by one), or -1 after `timeout_s`: then it gets SIGTERM
  // and, 3 s later, SIGKILL.
  int wait(double timeout_s);
  double seconds() const { return seconds_; }  // from the start until it exited (after wait)
  std::string output() const;

 private:
  pid_t pid_ = -1;
  bool running_ = false;
  double seconds_ = 0;
  std::string dir_, output_path_;
  int64_t start_ns_ = 0;
};

// `lvrl ARGS...` (the built binary), waited for.
struct Invocation {
  int exit_code = -1;
  std::string output;
  double seconds = 0;
};
Invocation run_lvrl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                    double timeout_s = 60);

}  // namespace lvrl::testing_sp

// First statement of a worker TEST: skips it outside run_ranks; inside, sets up the rank and labels
// every failure of the test with "rank N of P".
#define LVRL_SP_WORKER_ONLY()                                                          \
  if (!::lvrl::testing_sp::is_worker()) GTEST_SKIP() << "a rank of run_ranks only";     \
  ::lvrl::testing_sp::enter_worker();                                                   \
  SCOPED_TRACE(::lvrl::testing_sp::rank_label())
