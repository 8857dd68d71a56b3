// Byte counts for people: every command that prints sizes (cache ls/stats, model info, sp plan)
// prints them the same way, in binary units.
#pragma once

#include <string>

namespace lvrl {

// "512 B", "1.5 KiB", "72.0 GiB", up to PiB; whole bytes below 1 KiB, one decimal above.
// Negative counts (a difference) keep their sign: "-2.0 MiB".
std::string human_bytes(double bytes);

}  // namespace lvrl
