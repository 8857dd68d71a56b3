// The one lvrl binary: every library registers its subcommands (core/command.h).
#include "core/command.h"

int main(int argc, char** argv) {
  return lvrl::run_cli(argc, argv);
}
