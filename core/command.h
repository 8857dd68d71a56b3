// The subcommand registry behind the one `lvrl` binary. Each library registers its own subcommands
// from a static object in its own .cpp, so adding a command never edits a central switch:
//
//   static lvrl::RegisterCommand probe("video probe", "Print a video's properties as JSON",
//       [](CLI::App& app) {
//         auto file = std::make_shared<std::string>();
//         app.add_option("FILE", *file)->required();
//         return [file] { return print_probe(*file); };  // the exit code
//       });
//
// Libraries are linked whole into executables (cmake/LvrlTargets.cmake) so these objects survive.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace lvrl {

using CommandAction = std::function<int()>;
using CommandSetup = std::function<CommandAction(CLI::App&)>;

struct CommandSpec {
  std::string path;     // words separated by single spaces: "config show"
  std::string summary;  // one line for --help
  CommandSetup setup;   // adds options; returns the action run after a successful parse
};

class CommandRegistry {
 public:
  static CommandRegistry& global();
  void add(CommandSpec spec);  // a repeated path is a bug: asserts
  const std::vector<CommandSpec>& commands() const { return commands_; }

 private:
  std::vector<CommandSpec> commands_;
};

struct RegisterCommand {
  RegisterCommand(std::string path, std::string summary, CommandSetup setup);
};

// Parses argv against every registered command and runs the chosen one. Returns the exit code:
// 0 on success, 2 on bad input (unknown command/flag, InputError), 1 on any other failure.
int run_cli(int argc, char** argv, const CommandRegistry& registry = CommandRegistry::global());

}  // namespace lvrl
