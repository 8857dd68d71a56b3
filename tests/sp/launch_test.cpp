// `lvrl sp launch`: the environment each rank gets, the exit code when a rank fails (the others
// stopped at once), signals forwarded to every rank, and commands that cannot run. Ranks that should
// be stopped sleep 60 s; finishing well before that shows they were (with room for a loaded machine).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "tests/support/files.h"
#include "tests/support/multi_rank.h"
#include "tests/support/run_process.h"

namespace lvrl::test {
namespace {
namespace fs = std::filesystem;

// The directory the ranks write into, read back by name.
struct Dir : TempDir {
  Dir() : TempDir("lvrl-launch-test") {}
  std::string read(const std::string& name) const { return read_file(file(name)); }
};

ProcessOptions with(const Environment& env, double timeout_s = 60) {
  ProcessOptions options;
  options.env = env;
  options.timeout_s = timeout_s;
  return options;
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::thread::hardware_concurrency());
}

TEST(SpLaunch, EachRankGetsTorchrunsEnvironmentAndAllSucceeding) {
  Dir dir;
  ProcessResult run = run_lvrl(
      {"sp", "launch", "--nproc", "3", "--", "sh", "-c",
       "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT "
       "$OMP_NUM_THREADS ${LVRL_STORE_FILE:-none} $EXTRA\" > \"$DIR/r$RANK\""},
      with({{"DIR", dir.path()}, {"LVRL_STORE_FILE", "/tmp/stale"}, {"EXTRA", "kept"}, {"RANK", "9"}}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::string port;
  for (int r = 0; r < 3; ++r) {
    std::istringstream line(dir.read("r" + std::to_string(r)));
    std::string rank, local_rank, world, local_world, addr, this_port, threads, store, extra;
    line >> rank >> local_rank >> world >> local_world >> addr >> this_port >> threads >> store >> extra;
    EXPECT_EQ(rank, std::to_string(r));
    EXPECT_EQ(local_rank, std::to_string(r));
    EXPECT_EQ(world, "3");
    EXPECT_EQ(local_world, "3");
    EXPECT_EQ(addr, "127.0.0.1");
    EXPECT_EQ(threads, std::to_string(std::max(1, usable_cores() / 3)));
    EXPECT_EQ(store, "none") << "a stale LVRL_STORE_FILE would override the TCP rendezvous";
    EXPECT_EQ(extra, "kept");
    if (r == 0) port = this_port;
    EXPECT_EQ(this_port, port) << "every rank must meet at one port";
  }
  EXPECT_GT(std::stoi(port), 0);
}

TEST(SpLaunch, ThreadsFlagSetsOmpThreads) {
  Dir dir;
  ProcessResult run = run_lvrl({"sp", "launch", "--nproc", "2", "--threads", "3", "--", "sh", "-c",
                                "echo $OMP_NUM_THREADS > \"$DIR/t$RANK\""},
                               with({{"DIR", dir.path()}}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(dir.read("t0"), "3\n");
  EXPECT_EQ(dir.read("t1"), "3\n");
}

TEST(SpLaunch, FailingRankReturnsItsCodeAndStopsTheOthers) {
  ProcessResult run = run_lvrl({"sp", "launch", "--nproc", "3", "--grace-s", "5", "--", "sh", "-c",
                                "if [ $RANK = 1 ]; then exit 3; else sleep 60; fi"},
                               with({}, 45));
  EXPECT_EQ(run.exit_code, 3) << run.output;
  EXPECT_LT(run.seconds, 30.0) << "the sleeping ranks must be stopped at once, not waited for";
  EXPECT_NE(run.output.find("rank 1 exited with code 3"), std::string::npos) << run.output;
}

TEST(SpLaunch, RankKilledBySignalGives128PlusSignal) {
  ProcessResult run = run_lvrl({"sp", "launch", "--nproc", "2", "--", "sh", "-c",
                                "if [ $RANK = 0 ]; then kill -KILL $$; fi; sleep 60"},
                               with({}, 45));
  EXPECT_EQ(run.exit_code, 128 + SIGKILL) << run.output;
  EXPECT_LT(run.seconds, 30.0);
}

TEST(SpLaunch, RankIgnoringSigtermIsKilledAfterTheGracePeriod) {
  Dir dir;  // rank 0 fails once rank 1 ignores SIGTERM
  ProcessResult run =
      run_lvrl({"sp", "launch", "--nproc", "2", "--grace-s", "0.5", "--", "sh", "-c",
                "if [ $RANK = 0 ]; then while [ ! -e \"$DIR/ready\" ]; do sleep 0.01; done; exit 5; fi; "
                "trap '' TERM; touch \"$DIR/ready\"; sleep 60"},
               with({{"DIR", dir.path()}}, 45));
  EXPECT_EQ(run.exit_code, 5) << run.output;
  EXPECT_LT(run.seconds, 30.0);
  EXPECT_NE(run.output.find("killing them"), std::string::npos) << run.output;
}

TEST(SpLaunch, ForwardsSigtermToEveryRank) {
  Dir dir;
  Process launcher({lvrl_binary(), "sp", "launch", "--nproc", "2", "--", "sh", "-c",
                    "trap 'echo term > \"$DIR/term$RANK\"; exit 7' TERM; touch \"$DIR/ready$RANK\"; "
                    "sleep 60 & wait $!"},
                   with({{"DIR", dir.path()}}, 45));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(fs::exists(dir.file("ready0")) && fs::exists(dir.file("ready1"))) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(::kill(launcher.pid(), SIGTERM), 0);
  const ProcessResult run = launcher.wait();
  EXPECT_EQ(run.exit_code, 7) << run.output;
  EXPECT_LT(run.seconds, 30.0);
  EXPECT_EQ(dir.read("term0"), "term\n");
  EXPECT_EQ(dir.read("term1"), "term\n");
}

// A rank that never finishes: run_ranks' time limit stops it (through launch_local_ranks' timeout_s).
TEST(RankRunWorker, SleepsForAMinute) {
  LVRL_RANK_WORKER_ONLY();
  std::this_thread::sleep_for(std::chrono::seconds(60));
}

TEST(RankRun, RanksPastTheTimeLimitAreStopped) {
  RankRunSettings settings;
  settings.timeout_s = 3;
  const RankRun run = run_ranks(2, "RankRunWorker.SleepsForAMinute", {}, settings);
  EXPECT_TRUE(run.timed_out) << run.output;
  EXPECT_EQ(run.exit_code, 128 + SIGTERM) << run.output;
  EXPECT_FALSE(ranks_succeeded(run));
}

TEST(SpLaunch, UnrunnableCommandIsAnInputErrorNamingIt) {
  ProcessResult run = run_lvrl({"sp", "launch", "--nproc", "2", "--", "/nonexistent/lvrl-worker"});
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("/nonexistent/lvrl-worker"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("cannot run it"), std::string::npos) << run.output;
}

TEST(SpLaunch, BadNprocFails) {
  ProcessResult run = run_lvrl({"sp", "launch", "--nproc", "0", "--", "true"});
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("--nproc"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace lvrl::test
