#include "core/stop_signal.h"

#include <csignal>

#include "core/error.h"

namespace lvrl {

namespace {

volatile std::sig_atomic_t received = 0;
bool installed = false;
struct sigaction previous_term, previous_int;

void on_signal(int signal) {
  if (received == signal) {  // the second one: the default action
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    return;
  }
  received = signal;
}

}  // namespace

StopSignal::StopSignal() {
  LVRL_ASSERT(!installed, "one StopSignal at a time");
  installed = true;
  received = 0;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, &previous_term);
  sigaction(SIGINT, &action, &previous_int);
}

StopSignal::~StopSignal() {
  sigaction(SIGTERM, &previous_term, nullptr);
  sigaction(SIGINT, &previous_int, nullptr);
  installed = false;
}

bool StopSignal::requested() const {
  return received != 0;
}
int StopSignal::signal() const {
  return received;
}

}  // namespace lvrl
