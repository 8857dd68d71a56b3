// The record the trainer reads is enough on its own: after a trip through the stream encoding, the
// prompt rebuilt from the record (markers expanded from the grids), the video rows by key and the
// recorded temperature give the trainer's log-probs of every answer within 1e-5 of those recorded.
#include "rollout/rollout_group.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "model/token_logprobs.h"
#include "tests/rollout/engine_support.h"

namespace lvrl::rollout {
namespace {

TEST(RolloutGroup, TheRecordAloneReproducesTheLogprobs) {
  model::QwenVL model = testing_rollout::preset_model("tiny", 23);
  at::NoGradGuard no_grad;
  GenerationRequest request;
  request.id = "r";
  request.prompt = testing_rollout::video_question(*model, "Where?", 3, 4);
  request.prompt.second_per_grid_ts = {0.5};
  request.n = 3;
  request.sampling.temperature = 0.9;
  request.sampling.top_p = 0.95;
  request.sampling.max_new_tokens = 7;
  request.sampling.seed = 11;
  Engine engine(model, testing_rollout::tokenizer(), EngineOptions{});
  const GenerationResult result = engine.generate({request})[0];

  const GroupContext context{"g-1", "prompt-7", 4, "video-key", {{"note", "ünïcode"}}};
  const cache::RolloutGroup sent = to_rollout_group(request, result, model->config(), context);
  const cache::RolloutGroup group = cache::decode_rollout(cache::encode_rollout(sent));
  ASSERT_EQ(group, sent);
  EXPECT_EQ(group.prompt_ids.size() + 12 - 1,
            static_cast<size_t>(request.prompt.input_ids.size(1)));  // 3·4·4/4 pads
  EXPECT_EQ(group.sampling.temperature, 0.9);
  EXPECT_EQ(group.policy_version, 4);

  // The trainer's side: nothing but the record and the rows its key names.
  const std::vector<int32_t> prompt = group.expand_prompt();
  ASSERT_EQ(at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end())).equal(request.prompt.input_ids[0]),
            true);
  for (size_t i = 0; i < group.samples.size(); ++i) {
    const cache::RolloutSample& sample = group.samples[i];
    EXPECT_EQ(sample.seed, 11u + i);
    std::vector<int64_t> ids(prompt.begin(), prompt.end());
    ids.insert(ids.end(), sample.response_ids.begin(), sample.response_ids.end());
    model::ModelInput input;
    input.input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
    input.video_embeds = request.prompt.video_embeds;  // what the cache returns for group.embedding_key
    input.video_grids.assign(group.video_grids.begin(), group.video_grids.end());
    input.second_per_grid_ts = group.second_per_grid_ts;
    const int64_t length = static_cast<int64_t>(sample.response_ids.size());
    const at::Tensor hidden =
        model->hidden_states(input)[0].narrow(0, static_cast<int64_t>(prompt.size()) - 1, length);
    model::LogprobOptions options;
    options.temperature = group.sampling.temperature;
    const at::Tensor expected = model::token_logprobs(
        hidden, model->lm_head_weight(),
        at::tensor(std::vector<int64_t>(sample.response_ids.begin(), sample.response_ids.end()), at::kLong),
        options);
    const double error = (at::tensor(sample.logprobs) - expected).abs().max().item<double>();
    EXPECT_LE(error, 1e-5) << "answer " << i;
  }
}

}  // namespace
}  // namespace lvrl::rollout
