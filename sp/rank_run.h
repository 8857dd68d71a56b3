// Running a part of this program on P local ranks and collecting what each rank reports: the one way
// `lvrl sp check`, bench_sp_attention and the multi-rank tests (tests/support/multi_rank.h) start
// ranks.
//
// The program re-executes itself (/proc/self/exe, never a fork of a process that runs LibTorch's
// threads) with `worker_args`, as P ranks of launch_local_ranks (sp/launch.h: one intra-op thread
// each by default, signals forwarded, the others stopped when one fails). The run owns a fresh
// temporary directory, removed afterwards, which holds
//   - the rendezvous: a FileStore there (LVRL_STORE_FILE), so runs in parallel (ctest -j) never race
//     for a TCP port; or, with `tcp_rendezvous`, launch_local_ranks' own TCPStore on a free port;
//   - one result file per rank: a rank appends to its own with write_rank_result, and the caller
//     gets them back in rank order.
// A rank finds that directory in LVRL_RANK_RUN_DIR.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace lvrl::sp {

struct RankRunOptions {
  int nproc = 1;                           // P ≥ 1
  std::vector<std::string> worker_args;    // this program's arguments in each rank
  std::map<std::string, std::string> env;  // for every rank, on top of the launcher's variables
  bool tcp_rendezvous = false;             // MASTER_ADDR/MASTER_PORT instead of a FileStore
  int threads_per_rank = 1;                // OMP_NUM_THREADS; 0 = max(1, cores / P)
  double timeout_s = 0;  // > 0: ranks still running then are stopped (SIGTERM, grace, SIGKILL)
  double grace_s = 10;   // SIGTERM → SIGKILL delay
  int output_fd = -1;    // the ranks' stdout and stderr; -1: this process's
};

struct RankRunResult {
  int exit_code = 0;                 // launch_local_ranks': 0 when every rank exited 0
  bool timed_out = false;            // the ranks were stopped at timeout_s
  std::vector<std::string> results;  // [P] what each rank wrote with write_rank_result ("" when nothing)
};

RankRunResult run_on_ranks(const RankRunOptions& options);

// In a rank: true when this process is a rank of run_on_ranks.
bool is_rank_of_run();
// In a rank: appends `text` to this rank's result.
void write_rank_result(const std::string& text);

}  // namespace lvrl::sp
