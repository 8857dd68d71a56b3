#include "core/command.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/log.h"

namespace lvrl {
namespace {
std::vector<std::string> split_words(const std::string& path) {
  std::vector<std::string> words;
  std::istringstream in(path);
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

// Finds or creates the CLI11 group for `word` under `parent`; groups need a subcommand.
CLI::App* group(CLI::App* parent, const std::string& word) {
  for (CLI::App* sub : parent->get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name() == word) return sub;
  }
  CLI::App* sub = parent->add_subcommand(word, fmt::format("{} commands", word));
  sub->require_subcommand(1);
  return sub;
}

const CLI::App* deepest_parsed(const CLI::App& app) {
  const CLI::App* at = &app;
  while (!at->get_subcommands().empty()) at = at->get_subcommands().front();
  return at;
}

std::string command_path(const CLI::App& app) {
  std::string path;
  for (const CLI::App* at = deepest_parsed(app); at != nullptr; at = at->get_parent()) {
    path = path.empty() ? at->get_name() : at->get_name() + " " + path;
  }
  return path;
}

std::string known_subcommands(const CLI::App* group) {
  std::string names;
  for (const CLI::App* sub : group->get_subcommands([](const CLI::App*) { return true; })) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
  }
  return names;
}
}  // namespace

CommandRegistry& CommandRegistry::global() {
  static CommandRegistry registry;
  return registry;
}

void CommandRegistry::add(CommandSpec spec) {
  for (const CommandSpec& existing : commands_) {
    LVRL_ASSERT(existing.path != spec.path, "command registered twice: " + spec.path);
  }
  LVRL_ASSERT(!split_words(spec.path).empty(), "empty command path");
  commands_.push_back(std::move(spec));
}

RegisterCommand::RegisterCommand(std::string path, std::string summary, CommandSetup setup) {
  CommandRegistry::global().add({std::move(path), std::move(summary), std::move(setup)});
}

int run_cli(int argc, char** argv, const CommandRegistry& registry) {
  CLI::App app{"lvrl: reinforcement-learning fine-tuning of vision-language models on long videos", "lvrl"};
  app.set_version_flag("--version", std::string("lvrl ") + LVRL_VERSION);
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log-level", log_level,
                 "trace|debug|info|warn|error|off (default: $LVRL_LOG_LEVEL or info)");

  std::map<const CLI::App*, CommandAction> actions;
  for (const CommandSpec& spec : registry.commands()) {
    std::vector<std::string> words = split_words(spec.path);
    CLI::App* parent = &app;
    for (size_t i = 0; i + 1 < words.size(); ++i) parent = group(parent, words[i]);
    CLI::App* leaf = parent->add_subcommand(words.back(), spec.summary);
    actions[leaf] = spec.setup(*leaf);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::RequiredError& e) {
    // A word that is no subcommand of a group reaches us as "a subcommand is required": name it.
    std::vector<std::string> extra = app.remaining(true);
    if (extra.empty()) return app.exit(e) == 0 ? 0 : 2;
    std::cerr << "error: unknown command '" << extra.front() << "' for '" << command_path(app)
              << "'; known: " << known_subcommands(deepest_parsed(app)) << "\n";
    return 2;
  } catch (const CLI::ParseError& e) {
    // CLI11 names an unknown flag or argument; --help and --version arrive here with code 0.
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    log::init(log_level);
    auto action = actions.find(deepest_parsed(app));
    LVRL_ASSERT(action != actions.end(), "parsed a command without an action");
    return action->second();
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace lvrl
