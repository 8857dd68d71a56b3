// Running programs from tests: a tool that is the reference (ffprobe, xxhsum, node), or the `lvrl`
// binary as users run it. Built on spawn_process (core/process.h: fork + exec at once, nothing
// inherited), never a shell unless the test asks for one (`sh -c`), with every run under a time
// limit so that a hang fails its test instead of stalling ctest. Output goes to files in a private
// directory (no pipe to drain, no deadlock on a chatty child) and is read back after the exit.
//
//   ProcessResult run = run_lvrl({"config", "show", "--config", path});
//   EXPECT_EQ(run.exit_code, 0) << run.output;
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/temp_dir.h"

namespace lvrl::test {

using Environment = std::map<std::string, std::string>;

struct ProcessOptions {
  Environment env;                   // set on top of this process's environment
  double timeout_s = 60;             // then SIGTERM, and SIGKILL 3 s later
  bool separate_stderr = false;      // stderr to ProcessResult::error_output instead of `output`
  std::optional<std::string> input;  // stdin; /dev/null when unset
};

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed by one; -1 when it ran past the time limit
  bool timed_out = false;
  std::string output;        // stdout, and stderr interleaved unless separate_stderr
  std::string error_output;  // stderr with separate_stderr
  double seconds = 0;        // from the start to the exit
};

// A child process started now; SIGKILLed and reaped if still running when destroyed.
class Process {
 public:
  // argv[0] is a path or a name on PATH; a program that cannot be started is a std::runtime_error.
  explicit Process(const std::vector<std::string>& argv, const ProcessOptions& options = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Waits for the exit or options.timeout_s from the start, whichever comes first.
  ProcessResult wait();

 private:
  TempDir dir_;
  ProcessOptions options_;
  pid_t pid_ = -1;
  bool running_ = false;
  int64_t start_ns_ = 0;
};

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// The `lvrl` binary this build made, and `lvrl ARGS...` run to its end.
std::string lvrl_binary();
ProcessResult run_lvrl(const std::vector<std::string>& args, const ProcessOptions& options = {});

// The source tree (fixtures, scripts).
std::string source_dir();

// argv as one line for messages (and cache keys: keep it stable), arguments with spaces, quotes,
// parentheses, commas, pipes or stars single-quoted.
std::string join_command(const std::vector<std::string>& argv);

}  // namespace lvrl::test
