// spawn_process against what the kernel reports about the child: its exit status, its descriptors
// (/proc/<pid>/fd), its signal state (/proc/<pid>/status), its process group and its environment.
#include "core/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "tests/support/files.h"

namespace lvrl {
namespace {

// Waits for `pid`; its exit status, or 128 + the signal that ended it.
int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

TEST(SpawnProcess, ExitStatusComesBack) {
  const pid_t pid = spawn_process({"sh", "-c", "exit 7"});
  ASSERT_GT(pid, 0);
  EXPECT_EQ(wait_for(pid), 7);
}

TEST(SpawnProcess, ExecFailureIsTheNegatedErrnoAndTheChildIsReaped) {
  EXPECT_EQ(spawn_process({"/nonexistent/lvrl-no-such-program"}), -ENOENT);
  EXPECT_EQ(spawn_process({"lvrl-no-such-program-on-path"}), -ENOENT);
  EXPECT_EQ(spawn_process({"/dev/null"}), -EACCES);  // not an executable
  int status;
  EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1);  // no child left behind
  EXPECT_EQ(errno, ECHILD);
}

TEST(SpawnProcess, InheritsNoDescriptorBeyondStdio) {
  const int opened = ::open("/dev/null", O_RDONLY);
  const int leaked = ::fcntl(opened, F_DUPFD, 20);  // no FD_CLOEXEC: fork + exec would pass it on
  ::close(opened);
  ASSERT_GE(leaked, 20);
  const std::string script = "test ! -e /proc/$$/fd/3 && test ! -e /proc/$$/fd/" + std::to_string(leaked) +
                             " && test -e /proc/$$/fd/2";
  const pid_t pid = spawn_process({"sh", "-c", script});
  ASSERT_GT(pid, 0);
  EXPECT_EQ(wait_for(pid), 0);
  ::close(leaked);
}

TEST(SpawnProcess, SignalsStartAtTheirDefaults) {
  // The parent ignores SIGUSR1 and blocks SIGUSR2; exec would keep both.
  struct sigaction ignore {
  }, saved{};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(::sigaction(SIGUSR1, &ignore, &saved), 0);
  sigset_t block, before;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &before), 0);
  // grep reads its own /proc/self/status: no signal ignored, none blocked.
  const pid_t ignored = spawn_process({"grep", "-Eq", "^SigIgn:[[:space:]]+0+$", "/proc/self/status"});
  const pid_t blocked = spawn_process({"grep", "-Eq", "^SigBlk:[[:space:]]+0+$", "/proc/self/status"});
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  ::sigaction(SIGUSR1, &saved, nullptr);
  ASSERT_GT(ignored, 0);
  ASSERT_GT(blocked, 0);
  EXPECT_EQ(wait_for(ignored), 0) << "the child still ignores a signal";
  EXPECT_EQ(wait_for(blocked), 0) << "the child still blocks a signal";
}

TEST(SpawnProcess, QuietAndEnvironment) {
  const std::vector<std::string> environment = {"LVRL_SPAWN_PROBE=yes", "PATH=/usr/bin:/bin"};
  SpawnOptions options;
  options.quiet = true;
  options.environment = &environment;
  const pid_t pid = spawn_process(
      {"sh", "-c",
       "test \"$LVRL_SPAWN_PROBE\" = yes && test -z \"$HOME\" && test /proc/$$/fd/1 -ef /dev/null && "
       "test /proc/$$/fd/2 -ef /dev/null && test /proc/$$/fd/0 -ef /dev/null"},
      options);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(wait_for(pid), 0);
  // Not quiet: stdout is ours (a pipe here), not /dev/null.
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const int saved = ::dup(1);
  ::dup2(out[1], 1);
  const pid_t loud = spawn_process({"sh", "-c", "test ! /proc/$$/fd/1 -ef /dev/null && echo hello"});
  ::dup2(saved, 1);
  ::close(saved);
  ::close(out[1]);
  ASSERT_GT(loud, 0);
  EXPECT_EQ(wait_for(loud), 0);
  char text[16] = {};
  EXPECT_EQ(::read(out[0], text, sizeof(text) - 1), 6);
  EXPECT_STREQ(text, "hello\n");
  ::close(out[0]);
}

// Descriptors given for stdin, stdout and stderr become the child's 0, 1 and 2 (over `quiet`), and
// nothing else of them is inherited: the child reads the input file and writes the two others.
TEST(SpawnProcess, StdioFromGivenDescriptors) {
  const TempDir dir("lvrl-spawn-test");
  test::write_file(dir.file("in"), "from the file\n");
  const int in = ::open(dir.file("in").c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open(dir.file("out").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  const int err = ::open(dir.file("err").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  ASSERT_GE(err, 0);
  SpawnOptions options;
  options.quiet = true;
  options.stdin_fd = in;
  options.stdout_fd = out;
  options.stderr_fd = err;
  const pid_t pid = spawn_process(
      {"sh", "-c", "read line && echo \"out: $line\" && echo err >&2 && test ! -e /proc/$$/fd/3"}, options);
  ::close(in);
  ::close(out);
  ::close(err);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(wait_for(pid), 0);
  EXPECT_EQ(test::read_file(dir.file("out")), "out: from the file\n");
  EXPECT_EQ(test::read_file(dir.file("err")), "err\n");
}

TEST(SpawnProcess, OwnProcessGroupTakesASignalToTheGroup) {
  SpawnOptions options;
  options.own_process_group = true;
  const pid_t pid = spawn_process({"sh", "-c", "sleep 30 & wait"}, options);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(::getpgid(pid), pid);
  EXPECT_NE(::getpgid(pid), ::getpgid(0));
  ASSERT_EQ(::kill(-pid, SIGTERM), 0);  // the shell and its sleep
  EXPECT_EQ(wait_for(pid), 128 + SIGTERM);
}

}  // namespace
}  // namespace lvrl
