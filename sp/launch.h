// Starting P local ranks of one command, torchrun-style: `lvrl sp launch --nproc P -- CMD ARGS...`.
//
// Each rank is started by spawn_process (core/process.h: fork + exec at once) with the environment
// Mesh rendezvous reads (sp/mesh.h):
//   RANK, LOCAL_RANK = 0..P−1, WORLD_SIZE = LOCAL_WORLD_SIZE = P,
//   MASTER_ADDR = 127.0.0.1, MASTER_PORT = a port the OS picked free just before the spawn
//   (a TCPStore, as on several nodes; rank 0 hosts it), OMP_NUM_THREADS = max(1, cores / P).
// Any LVRL_STORE_FILE inherited from the caller is removed, so the ranks rendezvous over TCP.
// The free port is released before rank 0 binds it again: another process could take it in that
// window, in which case rank 0's TCPStore fails to bind and the launch fails (rerun).
//
// Each rank runs in its own process group with stdin from /dev/null and the launcher's stdout and
// stderr (unprefixed: lvrl ranks log with "[rank N]" already). Signals go to a rank's whole group,
// so a shell rank's children go with it. SIGINT/SIGTERM/SIGHUP to the launcher are forwarded; a
// second one, or the grace period running out, sends SIGKILL. When a rank exits non-zero (or dies
// by a signal), the others get SIGTERM at once and SIGKILL after the grace period. Ranks also get
// SIGTERM when the launching thread dies (PR_SET_PDEATHSIG).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace lvrl::sp {

struct LaunchOptions {
  int nproc = 1;                           // P ≥ 1
  std::vector<std::string> command;        // argv; command[0] is looked up in PATH
  std::map<std::string, std::string> env;  // set for every rank, after the variables above
  int threads_per_rank = 0;                // OMP_NUM_THREADS; 0 = max(1, cores / P)
  double grace_s = 10;                     // SIGTERM → SIGKILL delay
  double timeout_s = 0;                    // > 0: ranks still running then are stopped as on a failure
  int output_fd = -1;                      // the ranks' stdout and stderr; -1: the launcher's
};

// Runs the ranks to the end. Returns 0 when every rank exits 0; else the exit code of the first
// rank that failed (128 + signal for one killed by a signal); 128 + signal when the launcher was
// interrupted and every rank still exited 0 (SIGTERM's when the timeout stopped them). A command
// that cannot be run is an InputError naming it.
int launch_local_ranks(const LaunchOptions& options);

// A TCP port that was free on this machine a moment ago (bind to port 0, read it, close).
int pick_free_port();

}  // namespace lvrl::sp
