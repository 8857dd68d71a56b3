// Starting child processes (a private redis-server, the ranks of a local launch): fork + exec at once,
// with async-signal-safe calls only in between — the parent may hold LibTorch's and OpenMP's threads
// and locks, and the child must never run them. The child:
//  - gets SIGTERM when the *thread* that started it exits (PR_SET_PDEATHSIG: start children from a
//    thread that outlives them, the main thread), and exits at once if that parent is already gone;
//  - starts with default signal handlers and nothing blocked, whatever the parent had set;
//  - inherits no descriptor beyond 0, 1 and 2: stdin reads /dev/null; stdout and stderr are the
//    parent's, or /dev/null when `quiet`; any of the three may instead be a descriptor the parent
//    opened (a file a test reads back afterwards);
//  - leads a process group of its own with `own_process_group`, so that a signal to the group
//    reaches what it starts in turn.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace lvrl {

struct SpawnOptions {
  bool quiet = false;              // stdout and stderr to /dev/null (a server that logs to a file)
  bool own_process_group = false;  // setpgid in the child and in the parent (no race with a signal)
  const std::vector<std::string>* environment = nullptr;  // "NAME=value" entries; null: this process's
  int stdin_fd = -1;                                      // becomes the child's 0; -1: /dev/null
  int stdout_fd = -1;  // becomes the child's 1 (over `quiet`); -1: the parent's, or /dev/null when quiet
  int stderr_fd = -1;  // becomes the child's 2, likewise
};

// Starts argv[0] (looked up on PATH unless it holds a '/') with `argv`. Returns the child's pid, or
// -errno when exec failed (the child is then reaped). pipe2 or fork failing is a LibraryError.
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

}  // namespace lvrl
