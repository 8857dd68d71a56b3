// Configuration: every key is declared once, with a type, a default, a range and a help line, in a
// schema section owned by the library that reads it. A job's config is the defaults, then a YAML
// file, then `a.b.c=value` overrides from the command line, each checked against the schema:
// an unknown key names the closest known key; a bad value names the key, the value and what was
// expected. Code never sees an unchecked value.
//
//   static lvrl::RegisterConfigSection data_section({"data", "Dataset to read", {
//       lvrl::ConfigKey::string("path", "", "dataset JSONL file"),
//       lvrl::ConfigKey::integer("max_samples", 0, "0 = all").range(0, 1e9)}});
//   lvrl::Config config = lvrl::Config::load("run.yaml", {"data.max_samples=8"});
//   int64_t n = config.get<int64_t>("data.max_samples");
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace lvrl {

enum class ConfigType { Bool, Int, Float, String, IntList, FloatList, StringList };
const char* config_type_name(ConfigType type);

using ConfigValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                                 std::vector<double>, std::vector<std::string>>;

class ConfigKey {
 public:
  static ConfigKey boolean(std::string name, bool value, std::string help);
  static ConfigKey integer(std::string name, int64_t value, std::string help);
  static ConfigKey number(std::string name, double value, std::string help);
  static ConfigKey string(std::string name, std::string value, std::string help);
  static ConfigKey int_list(std::string name, std::vector<int64_t> value, std::string help);
  static ConfigKey number_list(std::string name, std::vector<double> value, std::string help);
  static ConfigKey string_list(std::string name, std::vector<std::string> value, std::string help);

  ConfigKey& range(double min, double max);              // inclusive; numbers and number-list elements
  ConfigKey& choices(std::vector<std::string> allowed);  // strings and string-list elements

  const std::string& name() const { return name_; }  // "section.key" once in a schema
  ConfigType type() const { return type_; }
  const ConfigValue& default_value() const { return default_; }
  const std::optional<double>& min() const { return min_; }
  const std::optional<double>& max() const { return max_; }
  const std::vector<std::string>& allowed() const { return choices_; }
  const std::string& help() const { return help_; }
  std::string expectation() const;  // "an integer in [1, 64]", "one of: fast, exact"

 private:
  friend class ConfigSchema;
  ConfigKey(std::string name, ConfigType type, ConfigValue value, std::string help);
  std::string name_;
  ConfigType type_;
  ConfigValue default_;
  std::optional<double> min_, max_;
  std::vector<std::string> choices_;
  std::string help_;
};

struct ConfigSection {
  std::string name;  // may be dotted for nested sections: "model.vision"
  std::string help;
  std::vector<ConfigKey> keys;
};

class ConfigSchema {
 public:
  static ConfigSchema& global();    // every section registered by a linked library
  void add(ConfigSection section);  // a key or section declared twice is a bug: asserts

  const ConfigKey* find(const std::string& key) const;  // nullptr when unknown
  bool is_section(const std::string& prefix) const;     // some key starts with "prefix."
  // The sections directly inside `prefix` ("" for the top level), full names, sorted:
  // {"model", "redis", ...}; inside "model": {"model.vision"}.
  std::vector<std::string> sections_in(const std::string& prefix) const;
  std::string closest_key(const std::string& key) const;  // by edit distance; "" if schema empty
  const std::map<std::string, ConfigKey>& keys() const { return keys_; }
  const std::map<std::string, std::string>& sections() const { return sections_; }  // name → help

 private:
  std::map<std::string, ConfigKey> keys_;
  std::map<std::string, std::string> sections_;
};

struct RegisterConfigSection {
  explicit RegisterConfigSection(ConfigSection section);
};

class Config {
 public:
  // Defaults, then `yaml_path` (skipped when empty), then each "a.b.c=value" override in order.
  static Config load(const std::string& yaml_path, const std::vector<std::string>& overrides = {},
                     const ConfigSchema& schema = ConfigSchema::global());
  // The same from YAML text; `source` names it in errors.
  static Config parse(const std::string& yaml_text, const std::string& source,
                      const std::vector<std::string>& overrides = {},
                      const ConfigSchema& schema = ConfigSchema::global());

  // T is bool, int64_t, double, std::string or a std::vector of those; asking for a key the schema
  // lacks or with the wrong type is a bug and asserts.
  template <typename T>
  const T& get(const std::string& key) const {
    const T* value = std::get_if<T>(&value_of(key));
    if (value == nullptr) wrong_type(key);
    return *value;
  }
  const ConfigValue& value_of(const std::string& key) const;
  const std::string& origin(const std::string& key) const;  // "default", "run.yaml:12", "override"
  // Where a key's value came from, as the file of an InputError about it: origin(), but "" for a
  // default (no file to blame).
  std::string source_of(const std::string& key) const;

  void set(const std::string& key, const std::string& text, const std::string& origin);  // checked
  std::string to_yaml(bool with_origins = false) const;  // every key, nested, resolved

 private:
  explicit Config(const ConfigSchema& schema);
  [[noreturn]] void wrong_type(const std::string& key) const;
  void apply_override(const std::string& assignment);
  const ConfigSchema* schema_;
  std::map<std::string, ConfigValue> values_;
  std::map<std::string, std::string> origins_;
};

}  // namespace lvrl
