#include "core/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

extern char** environ;

namespace lvrl {
namespace {

[[noreturn]] void fail_posix(const char* statement) {
  ::lvrl::detail::fail_library("posix", statement, "spawn_process", __FILE__, __LINE__, std::strerror(errno));
}

// NULL-terminated pointers into `strings`, made before the fork: the child may not allocate.
std::vector<char*> pointers(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The child, between fork and exec: async-signal-safe calls only. Reports exec's errno on `report`.
[[noreturn]] void become(char* const* argv, char* const* envp, pid_t parent, int report,
                         const SpawnOptions& options) {
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  if (options.own_process_group) ::setpgid(0, 0);
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  for (int signo = 1; signo < NSIG; ++signo)
    ::sigaction(signo, &action, nullptr);  // fails harmlessly for KILL, STOP
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    if (options.quiet) {
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
  }
  if (options.stdin_fd >= 0) ::dup2(options.stdin_fd, 0);
  if (options.stdout_fd >= 0) ::dup2(options.stdout_fd, 1);
  if (options.stderr_fd >= 0) ::dup2(options.stderr_fd, 2);
  ::dup2(report, 3);
  ::close_range(4, ~0U, 0);  // nothing else inherited: no sockets, no other children's pipes, no test files
  ::fcntl(3, F_SETFD, FD_CLOEXEC);
  ::execvpe(argv[0], argv, envp);
  const int error = errno;
  ssize_t ignored = ::write(3, &error, sizeof(error));
  (void)ignored;
  ::_exit(127);
}

}  // namespace

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
  LVRL_ASSERT(!argv.empty() && !argv.front().empty(), "spawn_process needs a program to run");
  std::vector<char*> args = pointers(argv);
  std::vector<char*> env =
      options.environment != nullptr ? pointers(*options.environment) : std::vector<char*>{};
  char* const* envp = options.environment != nullptr ? env.data() : environ;

  int report[2];  // the child writes errno here if exec fails; CLOEXEC closes it when exec works
  if (::pipe2(report, O_CLOEXEC) != 0) fail_posix("pipe2");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(report[0]);
    ::close(report[1]);
    errno = error;
    fail_posix("fork");
  }
  if (pid == 0) become(args.data(), envp, parent, report[1], options);
  if (options.own_process_group) ::setpgid(pid, pid);
  ::close(report[1]);
  int error = 0;
  ssize_t got;
  do {
    got = ::read(report[0], &error, sizeof(error));
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (got == static_cast<ssize_t>(sizeof(error))) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return -error;
  }
  return pid;
}

}  // namespace lvrl
