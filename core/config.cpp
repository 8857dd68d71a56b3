#include "core/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lvrl {
namespace {

bool is_list(ConfigType type) {
  return type == ConfigType::IntList || type == ConfigType::FloatList || type == ConfigType::StringList;
}

ConfigType element_type(ConfigType type) {
  switch (type) {
    case ConfigType::IntList:
      return ConfigType::Int;
    case ConfigType::FloatList:
      return ConfigType::Float;
    case ConfigType::StringList:
      return ConfigType::String;
    default:
      return type;
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string format_number(double x) {
  return fmt::format("{}", x);
}

// One scalar, already known to be text, into the key's element type; checks range and choices.
ConfigValue scalar_value(const ConfigKey& key, ConfigType type, const std::string& text,
                         const InputWhere& where) {
  auto fail = [&]() -> InputError { return InputError(where, "expected " + key.expectation()); };
  auto check_range = [&](double x) {
    if ((key.min() && x < *key.min()) || (key.max() && x > *key.max())) throw fail();
  };
  switch (type) {
    case ConfigType::Bool: {
      if (text == "true" || text == "True" || text == "TRUE") return true;
      if (text == "false" || text == "False" || text == "FALSE") return false;
      throw fail();
    }
    case ConfigType::Int: {
      int64_t value = 0;
      const char* begin = text.data() + (text.size() > 1 && text[0] == '+' ? 1 : 0);
      auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty()) throw fail();
      check_range(static_cast<double>(value));
      return value;
    }
    case ConfigType::Float: {
      if (text.empty()) throw fail();
      std::istringstream in(text);
      in.imbue(std::locale::classic());
      double value = 0;
      in >> value;
      if (in.fail() || !in.eof() || !std::isfinite(value)) throw fail();
      check_range(value);
      return value;
    }
    case ConfigType::String: {
      if (!key.allowed().empty() &&
          std::find(key.allowed().begin(), key.allowed().end(), text) == key.allowed().end()) {
        throw fail();
      }
      return text;
    }
    default:
      LVRL_ASSERT(false, "scalar_value called for a list type");
  }
  return {};
}

template <typename T>
std::vector<T> collect(const std::vector<ConfigValue>& items) {
  std::vector<T> out;
  for (const ConfigValue& item : items) out.push_back(std::get<T>(item));
  return out;
}

ConfigValue list_value(const ConfigKey& key, const std::vector<std::string>& texts, const InputWhere& where) {
  std::vector<ConfigValue> items;
  for (const std::string& text : texts) {
    InputWhere item_where = where;
    item_where.value = text;
    items.push_back(scalar_value(key, element_type(key.type()), text, item_where));
  }
  switch (key.type()) {
    case ConfigType::IntList:
      return collect<int64_t>(items);
    case ConfigType::FloatList:
      return collect<double>(items);
    default:
      return collect<std::string>(items);
  }
}

std::string node_text(const YAML::Node& node) {
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

// A YAML node into the key's type: scalars for scalar keys, sequences of scalars for lists.
ConfigValue node_value(const ConfigKey& key, const YAML::Node& node, InputWhere where) {
  where.value = node_text(node);
  if (is_list(key.type())) {
    if (!node.IsSequence()) throw InputError(where, "expected a list of " + key.expectation());
    std::vector<std::string> texts;
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) throw InputError(where, "expected a list of " + key.expectation());
      texts.push_back(item.Scalar());
    }
    return list_value(key, texts, where);
  }
  if (node.IsNull() && key.type() == ConfigType::String) return scalar_value(key, key.type(), "", where);
  if (!node.IsScalar()) throw InputError(where, "expected " + key.expectation());
  return scalar_value(key, key.type(), node.Scalar(), where);
}

void emit_value(YAML::Emitter& out, const ConfigValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>> ||
                      std::is_same_v<T, std::vector<std::string>>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const auto& item : v) out << item;
          out << YAML::EndSeq;
        } else if constexpr (std::is_same_v<T, std::string>) {
          out << YAML::DoubleQuoted << v;
        } else {
          out << v;
        }
      },
      value);
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError({path, 0, "", ""}, "cannot open config file: " + std::string(std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}
}  // namespace

const char* config_type_name(ConfigType type) {
  switch (type) {
    case ConfigType::Bool:
      return "bool";
    case ConfigType::Int:
      return "int";
    case ConfigType::Float:
      return "float";
    case ConfigType::String:
      return "string";
    case ConfigType::IntList:
      return "list<int>";
    case ConfigType::FloatList:
      return "list<float>";
    case ConfigType::StringList:
      return "list<string>";
  }
  return "?";
}

// ---- ConfigKey ----

ConfigKey::ConfigKey(std::string name, ConfigType type, ConfigValue value, std::string help)
    : name_(std::move(name)), type_(type), default_(std::move(value)), help_(std::move(help)) {}

ConfigKey ConfigKey::boolean(std::string name, bool value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::Bool, value, std::move(help));
}
ConfigKey ConfigKey::integer(std::string name, int64_t value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::Int, value, std::move(help));
}
ConfigKey ConfigKey::number(std::string name, double value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::Float, value, std::move(help));
}
ConfigKey ConfigKey::string(std::string name, std::string value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::String, std::move(value), std::move(help));
}
ConfigKey ConfigKey::int_list(std::string name, std::vector<int64_t> value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::IntList, std::move(value), std::move(help));
}
ConfigKey ConfigKey::number_list(std::string name, std::vector<double> value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::FloatList, std::move(value), std::move(help));
}
ConfigKey ConfigKey::string_list(std::string name, std::vector<std::string> value, std::string help) {
  return ConfigKey(std::move(name), ConfigType::StringList, std::move(value), std::move(help));
}

ConfigKey& ConfigKey::range(double min, double max) {
  ConfigType element = element_type(type_);
  LVRL_ASSERT(element == ConfigType::Int || element == ConfigType::Float,
              "range() on a non-number key " + name_);
  LVRL_ASSERT(min <= max, "range() with min > max on " + name_);
  min_ = min;
  max_ = max;
  return *this;
}

ConfigKey& ConfigKey::choices(std::vector<std::string> allowed) {
  LVRL_ASSERT(element_type(type_) == ConfigType::String, "choices() on a non-string key " + name_);
  choices_ = std::move(allowed);
  return *this;
}

std::string ConfigKey::expectation() const {
  switch (element_type(type_)) {
    case ConfigType::Bool:
      return "true or false";
    case ConfigType::Int:
    case ConfigType::Float: {
      std::string what = element_type(type_) == ConfigType::Int ? "an integer" : "a finite number";
      if (min_ && max_)
        return fmt::format("{} in [{}, {}]", what, format_number(*min_), format_number(*max_));
      return what;
    }
    default:
      if (!choices_.empty()) return fmt::format("one of: {}", fmt::join(choices_, ", "));
      return "a string";
  }
}

// ---- ConfigSchema ----

ConfigSchema& ConfigSchema::global() {
  static ConfigSchema schema;
  return schema;
}

void ConfigSchema::add(ConfigSection section) {
  LVRL_ASSERT(!section.name.empty(), "config section without a name");
  LVRL_ASSERT(sections_.count(section.name) == 0, "config section declared twice: " + section.name);
  sections_[section.name] = section.help;
  for (ConfigKey& key : section.keys) {
    key.name_ = section.name + "." + key.name_;
    LVRL_ASSERT(keys_.count(key.name_) == 0, "config key declared twice: " + key.name_);
    // The default must satisfy the key's own checks: validate it like any user value.
    YAML::Emitter text;
    emit_value(text, key.default_);
    node_value(key, YAML::Load(text.c_str()), {"", 0, key.name_, ""});
    keys_.emplace(key.name_, key);
  }
  for (const auto& [name, key] : keys_) {
    LVRL_ASSERT(sections_.count(name) == 0, "config key shadows a section: " + name);
  }
}

const ConfigKey* ConfigSchema::find(const std::string& key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &it->second;
}

bool ConfigSchema::is_section(const std::string& prefix) const {
  auto it = keys_.lower_bound(prefix + ".");
  return it != keys_.end() && it->first.compare(0, prefix.size() + 1, prefix + ".") == 0;
}

std::vector<std::string> ConfigSchema::sections_in(const std::string& prefix) const {
  const std::string head = prefix.empty() ? "" : prefix + ".";
  std::vector<std::string> out;
  for (const auto& [name, key] : keys_) {
    if (name.compare(0, head.size(), head) != 0) continue;
    const size_t dot = name.find('.', head.size());
    if (dot == std::string::npos) continue;  // a key of `prefix` itself
    std::string section = name.substr(0, dot);
    if (out.empty() || out.back() != section) out.push_back(std::move(section));  // keys_ is sorted
  }
  return out;
}

std::string ConfigSchema::closest_key(const std::string& key) const {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& [name, spec] : keys_) {
    size_t distance = edit_distance(key, name);
    if (distance < best_distance) {
      best_distance = distance;
      best = name;
    }
  }
  return best;
}

RegisterConfigSection::RegisterConfigSection(ConfigSection section) {
  ConfigSchema::global().add(std::move(section));
}

// ---- Config ----

Config::Config(const ConfigSchema& schema) : schema_(&schema) {
  for (const auto& [name, key] : schema.keys()) {
    values_[name] = key.default_value();
    origins_[name] = "default";
  }
}

namespace {
[[noreturn]] void unknown_key(const ConfigSchema& schema, const InputWhere& where) {
  std::string closest = schema.closest_key(where.key);
  throw InputError(where, closest.empty() ? "unknown config key (no keys are declared)"
                                          : fmt::format("unknown config key; did you mean '{}'?", closest));
}

// Walks a YAML mapping, checking every key against the schema and storing values.
void walk(const YAML::Node& map, const std::string& prefix, const std::string& source,
          const ConfigSchema& schema, std::map<std::string, ConfigValue>& values,
          std::map<std::string, std::string>& origins) {
  for (const auto& entry : map) {
    int line = entry.first.Mark().line + 1;
    if (!entry.first.IsScalar()) {
      throw InputError({source, line, prefix, node_text(entry.first)}, "config keys must be plain names");
    }
    std::string name = prefix.empty() ? entry.first.Scalar() : prefix + "." + entry.first.Scalar();
    InputWhere where{source, line, name, ""};
    if (const ConfigKey* key = schema.find(name)) {
      values[name] = node_value(*key, entry.second, where);
      origins[name] = fmt::format("{}:{}", source, line);
    } else if (schema.is_section(name)) {
      if (!entry.second.IsMap()) {
        where.value = node_text(entry.second);
        throw InputError(where, "expected a mapping: this is a config section, not a key");
      }
      walk(entry.second, name, source, schema, values, origins);
    } else if (entry.second.IsMap()) {
      // A whole section the schema lacks: a typo, or one whose library this binary does not link.
      const std::vector<std::string> known = schema.sections_in(prefix);
      throw InputError(where, known.empty() ? "no config section of this name has a schema"
                                            : fmt::format("no config section of this name has a schema; the "
                                                          "known sections{} are: {}",
                                                          prefix.empty() ? "" : " of '" + prefix + "'",
                                                          fmt::join(known, ", ")));
    } else {
      unknown_key(schema, where);
    }
  }
}
}  // namespace

Config Config::parse(const std::string& yaml_text, const std::string& source,
                     const std::vector<std::string>& overrides, const ConfigSchema& schema) {
  Config config(schema);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw InputError({source, e.mark.line >= 0 ? e.mark.line + 1 : 0, "", ""}, "not valid YAML: " + e.msg);
  }
  if (!root.IsNull()) {
    if (!root.IsMap()) throw InputError({source, 1, "", ""}, "expected a YAML mapping at the top level");
    walk(root, "", source, schema, config.values_, config.origins_);
  }
  for (const std::string& assignment : overrides) config.apply_override(assignment);
  return config;
}

Config Config::load(const std::string& yaml_path, const std::vector<std::string>& overrides,
                    const ConfigSchema& schema) {
  if (yaml_path.empty()) return parse("", "(defaults)", overrides, schema);
  return parse(read_file_text(yaml_path), yaml_path, overrides, schema);
}

void Config::apply_override(const std::string& assignment) {
  size_t equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) {
    throw InputError({"command line", 0, "", assignment}, "expected an override of the form a.b.c=value");
  }
  set(assignment.substr(0, equals), assignment.substr(equals + 1), "override");
}

void Config::set(const std::string& name, const std::string& text, const std::string& origin) {
  InputWhere where{origin == "override" ? "command line" : origin, 0, name, text};
  const ConfigKey* key = schema_->find(name);
  if (key == nullptr) unknown_key(*schema_, where);
  if (!is_list(key->type())) {
    values_[name] = scalar_value(*key, key->type(), text, where);
  } else if (!text.empty() && text.front() == '[') {
    YAML::Node node;
    try {
      node = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw InputError(where, "not a valid YAML list: " + e.msg);
    }
    values_[name] = node_value(*key, node, where);
  } else {  // "1,2,3"
    std::vector<std::string> items;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, ',');) items.push_back(item);
    values_[name] = list_value(*key, items, where);
  }
  origins_[name] = origin;
}

const ConfigValue& Config::value_of(const std::string& key) const {
  auto it = values_.find(key);
  LVRL_ASSERT(it != values_.end(), "config key read but never declared: " + key);
  return it->second;
}

const std::string& Config::origin(const std::string& key) const {
  auto it = origins_.find(key);
  LVRL_ASSERT(it != origins_.end(), "config key read but never declared: " + key);
  return it->second;
}

void Config::wrong_type(const std::string& key) const {
  LVRL_ASSERT(false, fmt::format("config key {} read with the wrong type; it is {}", key,
                                 config_type_name(schema_->find(key)->type())));
  std::abort();
}

std::string Config::source_of(const std::string& key) const {
  const std::string& where = origin(key);
  return where == "default" ? "" : where;
}

std::string Config::to_yaml(bool with_origins) const {
  // Keys are sorted, so each section's keys are adjacent: open and close maps as prefixes change.
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::vector<std::string> open;
  for (const auto& [name, value] : values_) {
    std::vector<std::string> parts;
    std::istringstream in(name);
    for (std::string part; std::getline(in, part, '.');) parts.push_back(part);
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) ++common;
    for (size_t i = open.size(); i > common; --i) out << YAML::EndMap;
    open.resize(common);
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      out << YAML::Key << parts[i] << YAML::Value << YAML::BeginMap;
      open.push_back(parts[i]);
    }
    out << YAML::Key << parts.back() << YAML::Value;
    emit_value(out, value);
    if (with_origins && origins_.at(name) != "default") out << YAML::Comment("from " + origins_.at(name));
  }
  for (size_t i = 0; i < open.size(); ++i) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace lvrl
