#include "trainer/weight_publisher.h"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "model/weights.h"

namespace lvrl::trainer {

namespace fs = std::filesystem;

WeightPublisher::WeightPublisher(std::string weights_dir, std::shared_ptr<cache::WeightChannel> channel,
                                 int64_t keep)
    : dir_(std::move(weights_dir)), channel_(std::move(channel)), keep_(keep) {
  LVRL_ASSERT(keep_ >= 1, fmt::format("keep {} weight versions", keep_));
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error)
    throw InputError({dir_, 0, "run.dir", dir_}, "cannot create the weights directory: " + error.message());
}

std::string WeightPublisher::path_of(int64_t version) const {
  return fmt::format("{}/v{}.safetensors", dir_, version);
}

cache::WeightVersion WeightPublisher::publish(const model::QwenVLImpl& model, int64_t version) {
  if (channel_) {
    // A resumed trainer retrains steps whose versions it announced before the crash: those
    // announcements (and their files, which rollouts may be loading) stand; versions go on from the
    // first one above them.
    const std::optional<cache::WeightVersion> newest = channel_->latest();
    if (newest && newest->version >= version) {
      LVRL_WARN(
          "weight version {} was announced before this run resumed; keeping that announcement "
          "(rollouts move on at version {})",
          version, newest->version + 1);
      return *newest;
    }
  }
  const std::string path = path_of(version);
  safetensors::save(path, model::language_state_dict(model),
                    {{"format", "pt"}, {"version", std::to_string(version)}});
  cache::WeightVersion announced{version, fs::absolute(path).string(), hash_file(path).hex(), 0};
  if (channel_) channel_->publish(announced);
  prune(version);
  return announced;
}

void WeightPublisher::prune(int64_t newest) const {
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    int64_t version = -1;
    if (std::sscanf(name.c_str(), "v%ld.safetensors", &version) != 1) continue;
    if (version <= newest - keep_) fs::remove(entry.path());
  }
}

}  // namespace lvrl::trainer
