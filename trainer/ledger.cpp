#include "trainer/ledger.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "trainer/metrics.h"

namespace lvrl::trainer {

Ledger::Ledger(const std::string& run_dir, int64_t resumed_step) : path_(run_dir + "/ledger.jsonl") {
  std::filesystem::create_directories(run_dir);
  truncate_jsonl_after(path_, resumed_step);
  file_ = std::fopen(path_.c_str(), "a");
  if (file_ == nullptr) throw InputError({path_, 0, "", ""}, "cannot open the ledger for appending");
}

Ledger::~Ledger() {
  if (file_ != nullptr) std::fclose(file_);
}

void Ledger::record(int64_t step, const std::vector<cache::RolloutGroup>& groups) {
  std::string text;
  for (const cache::RolloutGroup& group : groups) {
    for (size_t i = 0; i < group.samples.size(); ++i) {
      const nlohmann::json line = {{"rollout_id", fmt::format("{}/{}", group.group_id, i)},
                                   {"group_id", group.group_id},
                                   {"policy_version", group.policy_version},
                                   {"step", step}};
      text += line.dump() + "\n";
    }
  }
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
    throw Error(fmt::format("cannot append to the ledger {}", path_));
  }
}

std::vector<LedgerLine> read_ledger(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError({path, 0, "", ""}, "cannot read the ledger");
  std::vector<LedgerLine> lines;
  std::string text;
  for (int number = 1; std::getline(in, text); ++number) {
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object() || !json.contains("rollout_id") || !json.contains("group_id") ||
        !json.contains("policy_version") || !json.contains("step")) {
      throw InputError({path, number, "", text.substr(0, 80)}, "not a ledger line");
    }
    lines.push_back({json["rollout_id"].get<std::string>(), json["group_id"].get<std::string>(),
                     json["policy_version"].get<int64_t>(), json["step"].get<int64_t>()});
  }
  return lines;
}

}  // namespace lvrl::trainer
