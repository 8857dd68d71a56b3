// A graceful stop on SIGTERM or SIGINT: while a StopSignal lives, either signal only sets a flag
// that long work polls between units (a training step, a rollout group), so the unit in flight
// finishes and the work can save before exiting. A second signal of the same kind while the first
// is pending ends the process the default way (a user pressing Ctrl-C twice means it). The earlier
// handlers come back when it is destroyed. One StopSignal at a time per process.
#pragma once

namespace lvrl {

class StopSignal {
 public:
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  bool requested() const;
  int signal() const;  // the signal received, 0 before any
};

}  // namespace lvrl
