#include "model/recompute.h"

#include <ATen/core/ivalue.h>
#include <torch/autograd.h>

#include <utility>
#include <vector>

#include "core/error.h"

namespace lvrl::model {

namespace {

// What the backward needs besides tensors, kept alive by the autograd graph until it runs.
struct LayerCall : torch::CustomClassHolder {
  LayerCall(DecoderLayer layer, std::shared_ptr<AttentionBackend> attention, int64_t layer_index)
      : layer(std::move(layer)), attention(std::move(attention)), layer_index(layer_index) {}
  DecoderLayer layer;
  std::shared_ptr<AttentionBackend> attention;
  int64_t layer_index;
};

class RecomputedLayer : public torch::autograd::Function<RecomputedLayer> {
 public:
  // Inputs: x [B, S, D], then the layer's trainable parameters (a TensorList: autograd sees each
  // one as an input, and backward returns their gradients after dx). Runs with grad mode off (Function::apply
  // turns it off): nothing is saved.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            at::TensorList parameters, const RopeTables& rope,
                            c10::intrusive_ptr<LayerCall> call) {
    ctx->save_for_backward({x, rope.cos, rope.sin});
    ctx->saved_data["parameters"] = static_cast<int64_t>(parameters.size());
    at::Tensor out = call->layer->forward(x, rope, *call->attention, nullptr, call->layer_index);
    ctx->saved_data["call"] = c10::IValue::make_capsule(std::move(call));
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    auto call = c10::static_intrusive_pointer_cast<LayerCall>(ctx->saved_data["call"].toCapsule());
    const int64_t parameter_count = ctx->saved_data["parameters"].toInt();
    std::vector<at::Tensor> parameters;  // the same list forward got, in the same order
    for (auto& parameter : call->layer->parameters()) {
      if (parameter.requires_grad()) parameters.push_back(parameter);
    }
    LVRL_ASSERT(static_cast<int64_t>(parameters.size()) == parameter_count,
                "a decoder layer's trainable parameters changed between forward and backward");

    const bool input_needs_grad = ctx->needs_input_grad(0);
    at::AutoGradMode grad_mode(true);
    at::Tensor x = saved[0].detach().requires_grad_(input_needs_grad);  // [B, S, D]
    const RopeTables rope{saved[1], saved[2]};
    at::Tensor out = call->layer->forward(x, rope, *call->attention, nullptr, call->layer_index);

    std::vector<at::Tensor> inputs;
    if (input_needs_grad) inputs.push_back(x);
    inputs.insert(inputs.end(), parameters.begin(), parameters.end());
    torch::autograd::variable_list grads =
        torch::autograd::grad({out}, inputs, {grad_outputs[0]},
                              /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
    // One gradient per forward input: x, each parameter, then none for rope and the call.
    torch::autograd::variable_list result;
    if (!input_needs_grad) result.emplace_back();
    result.insert(result.end(), grads.begin(), grads.end());
    result.emplace_back();
    result.emplace_back();
    return result;
  }
};

}  // namespace

at::Tensor recompute_decoder_layer(const DecoderLayer& layer, const at::Tensor& x, const RopeTables& rope,
                                   std::shared_ptr<AttentionBackend> attention, int64_t layer_index) {
  LVRL_ASSERT(attention != nullptr, "recompute_decoder_layer without an attention backend");
  torch::autograd::variable_list parameters;
  for (auto& parameter : layer->parameters()) {
    if (parameter.requires_grad()) parameters.push_back(parameter);
  }
  return RecomputedLayer::apply(x, at::TensorList(parameters), rope,
                                c10::make_intrusive<LayerCall>(layer, std::move(attention), layer_index));
}

}  // namespace lvrl::model
