// The one lvrl binary: every library registers its subcommands (core/command.h).
#include "core/command.h"
#include "core/memory.h"

int main(int argc, char** argv) {
  lvrl::fix_mmap_threshold();  // before any tensor exists (core/memory.h)
  return lvrl::run_cli(argc, argv);
}
