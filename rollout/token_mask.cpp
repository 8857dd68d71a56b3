// The sampling mask, built once per tokenizer and model.
#include "rollout/token_mask.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"

namespace lvrl::rollout {

at::Tensor sampling_token_mask(const model::Tokenizer& tokenizer, int64_t vocab_rows) {
  const auto vocab = static_cast<int64_t>(tokenizer.vocab_size());
  if (vocab_rows < vocab) {
    throw InputError(
        {tokenizer.source(), 0, "vocab_size", std::to_string(vocab)},
        fmt::format("the tokenizer has more ids than the model's {} embedding rows", vocab_rows));
  }
  at::Tensor allowed = at::zeros({vocab_rows}, at::kBool);  // [V_rows]
  bool* data = allowed.data_ptr<bool>();
  for (int64_t id = 0; id < vocab; ++id) data[id] = tokenizer.contains(static_cast<model::TokenId>(id));
  for (const model::AddedToken& token : tokenizer.added_tokens()) {
    for (const char* placeholder : kVisionPlaceholderTokens) {
      if (token.content == placeholder) data[token.id] = false;
    }
  }
  return allowed;
}

}  // namespace lvrl::rollout
