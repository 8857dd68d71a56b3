// `lvrl config show` prints a resolved config; `lvrl config keys` lists the schema.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "core/command.h"
#include "core/config.h"
#include "core/error.h"

namespace lvrl {
namespace {
struct ShowArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  bool origins = false;
};

const RegisterCommand show_command(
    "config show", "Print the resolved config: defaults, then --config FILE, then a.b.c=value overrides",
    [](CLI::App& app) {
      auto args = std::make_shared<ShowArgs>();
      app.add_option("--config", args->config_path, "YAML config file")->check(CLI::ExistingFile);
      app.add_option("overrides", args->overrides, "a.b.c=value overrides, applied in order");
      app.add_flag("--origins", args->origins, "annotate each value set by the file or an override");
      return [args] {
        Config config = Config::load(args->config_path, args->overrides);
        std::cout << config.to_yaml(args->origins);
        return 0;
      };
    });

std::string default_text(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>)
          return "\"" + v + "\"";
        else if constexpr (std::is_same_v<T, bool>)
          return v ? "true" : "false";
        else if constexpr (std::is_arithmetic_v<T>)
          return fmt::format("{}", v);
        else {
          YAML::Emitter out;
          out << YAML::Flow << v;
          return out.c_str();
        }
      },
      value);
}

const RegisterCommand keys_command(
    "config keys", "List every config key: type, default, accepted values, help", [](CLI::App& app) {
      auto section = std::make_shared<std::string>();
      app.add_option("--section", *section, "only this section");
      return [section] {
        const ConfigSchema& schema = ConfigSchema::global();
        if (!section->empty() && schema.sections().count(*section) == 0) {
          throw InputError({"", 0, "--section", *section}, "no such config section");
        }
        for (const auto& [name, key] : schema.keys()) {
          if (!section->empty() && name.rfind(*section + ".", 0) != 0) continue;
          std::cout << fmt::format("{}  ({}, default {})\n    {}; expects {}\n", name,
                                   config_type_name(key.type()), default_text(key.default_value()),
                                   key.help(), key.expectation());
        }
        return 0;
      };
    });
}  // namespace
}  // namespace lvrl
