#include "trainer/policy_model.h"

#include <sys/resource.h>

#include "core/error.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace lvrl::trainer {

std::vector<at::Tensor> PolicyModel::trained_tensors() const {
  std::vector<at::Tensor> out;
  for (const auto& item : trained) out.push_back(item.second);
  return out;
}

namespace {
bool is_visual(const std::string& name) {
  return name.rfind("visual.", 0) == 0;
}
}  // namespace

PolicyModel load_policy(const Config& config) {
  const model::ModelSettings settings = model::model_settings_from(config);
  PolicyModel policy;
  policy.model = model::load_model(settings.path, settings.dtype, settings.device);
  policy.model->train();
  for (const auto& item : policy.model->named_parameters()) {
    if (is_visual(item.key())) {
      item.value().set_requires_grad(false);
    } else {
      policy.trained.emplace_back(item.key(), item.value());
    }
  }
  return policy;
}

model::QwenVL load_reference(const Config& config) {
  const model::ModelSettings settings = model::model_settings_from(config);
  model::QwenVL reference = model::load_model(settings.path, settings.dtype, settings.device);
  reference->eval();
  for (auto& param : reference->parameters()) param.set_requires_grad(false);
  return reference;
}

double peak_host_memory_gb() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB
}

int64_t total_steps(const Config& config, int64_t items, int64_t batch, int64_t steps_per_batch) {
  const int64_t steps = config.get<int64_t>("trainer.steps");
  if (steps > 0) return steps;
  const int64_t epochs = config.get<int64_t>("trainer.epochs");
  if (epochs == 0) {
    throw InputError({config.source_of("trainer.epochs"), 0, "trainer.epochs", "0"},
                     "with trainer.steps 0 the run's length comes from trainer.epochs: set one of them");
  }
  return epochs * ((items + batch - 1) / batch) * steps_per_batch;
}

}  // namespace lvrl::trainer
