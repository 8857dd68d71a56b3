#include "trainer/step_flops.h"

namespace lvrl::trainer {

std::vector<LinearShape> layer_linears(const model::TextConfig& text) {
  const int64_t heads = text.num_attention_heads * text.head_dim();
  const int64_t kv = text.num_key_value_heads * text.head_dim();
  return {{"q_proj", text.hidden_size, heads},
          {"k_proj", text.hidden_size, kv},
          {"v_proj", text.hidden_size, kv},
          {"o_proj", heads, text.hidden_size},
          {"gate_proj", text.hidden_size, text.intermediate_size},
          {"up_proj", text.hidden_size, text.intermediate_size},
          {"down_proj", text.intermediate_size, text.hidden_size}};
}

StepFlops step_flops(const model::TextConfig& text, const TrainBatch& batch) {
  double linear_params = 0;
  for (const LinearShape& shape : layer_linears(text))
    linear_params += static_cast<double>(shape.in * shape.out);
  linear_params *= static_cast<double>(text.num_hidden_layers);
  StepFlops flops;
  const auto layers = static_cast<double>(text.num_hidden_layers);
  const auto width = static_cast<double>(text.num_attention_heads * text.head_dim());
  for (const TrainSequence& sequence : batch.sequences) {
    const auto s = static_cast<double>(sequence.length());
    flops.linear += 6 * s * linear_params;
    flops.attention += 6 * layers * width * s * s;
    flops.head += 6 * static_cast<double>(sequence.response_tokens()) * static_cast<double>(text.vocab_size) *
                  static_cast<double>(text.hidden_size);
  }
  return flops;
}

}  // namespace lvrl::trainer
