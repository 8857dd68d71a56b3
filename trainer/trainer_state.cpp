#include "trainer/trainer_state.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lvrl::trainer {
namespace {

const nlohmann::json& field(const nlohmann::json& object, const char* name, const std::string& source,
                            const std::string& path) {
  const std::string key = path.empty() ? name : path + "." + name;
  if (!object.is_object() || !object.contains(name)) {
    throw InputError({source, 0, key, ""}, "missing from the trainer state");
  }
  return object[name];
}

int64_t int_field(const nlohmann::json& object, const char* name, const std::string& source,
                  const std::string& path = "") {
  const nlohmann::json& value = field(object, name, source, path);
  if (!value.is_number_integer() || value.get<int64_t>() < 0) {
    throw InputError({source, 0, path.empty() ? name : path + "." + name, value.dump()},
                     "expected a non-negative integer");
  }
  return value.get<int64_t>();
}

}  // namespace

DataCursor cursor_to_read_from(const DataCursor& cursor, int64_t dataset_size, const std::string& source) {
  if (cursor.position > dataset_size) {
    throw InputError({source, 0, "data.position", std::to_string(cursor.position)},
                     fmt::format("the data cursor is past the end of the dataset's {} items (did the "
                                 "dataset change since the checkpoint?)",
                                 dataset_size));
  }
  if (cursor.position < dataset_size) return cursor;
  DataCursor next = cursor;
  next.epoch += 1;
  next.position = 0;
  return next;
}

int64_t items_remaining(const DataCursor& cursor, int64_t dataset_size, int64_t epochs) {
  const int64_t consumed = cursor.epoch * dataset_size + cursor.position;
  return std::max<int64_t>(0, epochs * dataset_size - consumed);
}

nlohmann::json state_to_json(const TrainerState& state) {
  return {{"step", state.step},
          {"schedule_position", state.schedule_position},
          {"data",
           {{"epoch", state.data.epoch},
            {"position", state.data.position},
            {"shuffle_seed", state.data.shuffle_seed}}},
          {"unacknowledged_ids", state.unacknowledged_ids},
          {"metrics", state.metrics}};
}

void state_from_json(const nlohmann::json& json, const std::string& source, TrainerState& state) {
  if (!json.is_object()) throw InputError({source, 0, "", ""}, "the trainer state must be a JSON object");
  state.step = int_field(json, "step", source);
  state.schedule_position = int_field(json, "schedule_position", source);
  const nlohmann::json& data = field(json, "data", source, "");
  state.data.epoch = int_field(data, "epoch", source, "data");
  state.data.position = int_field(data, "position", source, "data");
  const nlohmann::json& shuffle_seed = field(data, "shuffle_seed", source, "data");
  if (!shuffle_seed.is_number_unsigned()) {
    throw InputError({source, 0, "data.shuffle_seed", shuffle_seed.dump()}, "expected an unsigned integer");
  }
  state.data.shuffle_seed = shuffle_seed.get<uint64_t>();
  const nlohmann::json& ids = field(json, "unacknowledged_ids", source, "");
  if (!ids.is_array()) {
    throw InputError({source, 0, "unacknowledged_ids", ids.dump()}, "expected a list of id strings");
  }
  state.unacknowledged_ids.clear();
  for (const nlohmann::json& id : ids) {
    if (!id.is_string()) {
      throw InputError({source, 0, "unacknowledged_ids", id.dump()}, "expected a list of id strings");
    }
    state.unacknowledged_ids.push_back(id.get<std::string>());
  }
  state.metrics = field(json, "metrics", source, "");
}

}  // namespace lvrl::trainer
