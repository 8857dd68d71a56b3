// Time for reports and records: a steady clock for durations (immune to clock changes), the wall
// clock in Unix milliseconds for what is stored (manifests, weight versions) and read elsewhere.
#pragma once

#include <chrono>
#include <cstdint>

namespace lvrl {

using SteadyClock = std::chrono::steady_clock;

// Seconds from `start` to now on the steady clock.
double seconds_since(SteadyClock::time_point start);

// Milliseconds since 1970-01-01 UTC on the wall clock.
int64_t now_unix_ms();

}  // namespace lvrl
