// Chunked log-softmax gather with a recomputing backward.
//
// Forward, per chunk of rows: z = (h Wᵀ)/T in the accumulation dtype, lse = logsumexp(z),
// out = z[target] − lse (logprobs_from_logits_in_place, which the sampler shares). Only lse [N] is kept.
// Backward, per chunk: recompute z, p = exp(z − lse), g_z = g·(onehot(target) − p)/T, then dh = g_z W and dW
// += g_zᵀ h. Peak extra memory is one chunk's [chunk, V] logits in each direction.
#include "model/token_logprobs.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "core/tensor_format.h"

namespace lvrl::model {

namespace {

at::ScalarType accumulation_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

class ChunkedLogprobs : public torch::autograd::Function<ChunkedLogprobs> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, const at::Tensor& targets, double temperature,
                            int64_t chunk) {
    const at::ScalarType acc = accumulation_dtype(hidden);
    const int64_t rows = hidden.size(0);
    at::Tensor out = at::empty({rows}, hidden.options().dtype(acc));
    at::Tensor lse = at::empty({rows}, hidden.options().dtype(acc));
    at::Tensor weight_acc = weight.to(acc);
    for (int64_t start = 0; start < rows; start += chunk) {
      const int64_t n = std::min(chunk, rows - start);
      at::Tensor z = at::matmul(hidden.narrow(0, start, n).to(acc), weight_acc.t());  // [n, V] logits
      at::Tensor chunk_lse;
      out.narrow(0, start, n)
          .copy_(logprobs_from_logits_in_place(z, targets.narrow(0, start, n), temperature, &chunk_lse));
      lse.narrow(0, start, n).copy_(chunk_lse);
    }
    ctx->save_for_backward({hidden, weight, targets, lse});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& hidden = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& targets = saved[2];
    const at::Tensor& lse = saved[3];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const at::ScalarType acc = lse.scalar_type();
    const at::Tensor grad_out = grads[0].to(acc);
    const int64_t rows = hidden.size(0);
    at::Tensor weight_acc = weight.to(acc);
    at::Tensor grad_hidden = at::empty_like(hidden);
    at::Tensor grad_weight = at::zeros_like(weight_acc);
    for (int64_t start = 0; start < rows; start += chunk) {
      const int64_t n = std::min(chunk, rows - start);
      at::Tensor h = hidden.narrow(0, start, n).to(acc);
      // In place throughout: each [n, V] temporary is a fresh page-faulted allocation otherwise.
      at::Tensor grad_z = at::matmul(h, weight_acc.t());  // [n, V] logits
      if (temperature != 1.0) grad_z.div_(temperature);
      at::Tensor g = grad_out.narrow(0, start, n).unsqueeze(1);             // [n, 1]
      grad_z.sub_(lse.narrow(0, start, n).unsqueeze(1)).exp_().mul_(-g);    // −g·p
      grad_z.scatter_add_(1, targets.narrow(0, start, n).unsqueeze(1), g);  // + g·onehot
      if (temperature != 1.0) grad_z.div_(temperature);
      grad_hidden.narrow(0, start, n).copy_(at::matmul(grad_z, weight_acc));
      grad_weight.addmm_(grad_z.t(), h);
    }
    return {grad_hidden, grad_weight.to(weight.scalar_type()), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// H = −Σ_j p_j log p_j of softmax(hidden·Wᵀ / T), chunk by chunk, the logits recomputed in backward:
// ∂H/∂z_k = −p_k (log p_k + H) for the scaled logits z = logits / T.
class ChunkedEntropy : public torch::autograd::Function<ChunkedEntropy> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, double temperature, int64_t chunk) {
    const at::ScalarType acc = accumulation_dtype(hidden);
    const int64_t rows = hidden.size(0);
    at::Tensor out = at::empty({rows}, hidden.options().dtype(acc));
    const at::Tensor weight_acc = weight.to(acc);
    for (int64_t start = 0; start < rows; start += chunk) {
      const int64_t n = std::min(chunk, rows - start);
      const at::Tensor log_p = at::log_softmax(
          at::matmul(hidden.narrow(0, start, n).to(acc), weight_acc.t()).div_(temperature), -1);
      out.narrow(0, start, n).copy_(-(log_p.exp() * log_p).sum(-1));
    }
    ctx->save_for_backward({hidden, weight, out});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& hidden = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& entropy = saved[2];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const at::ScalarType acc = entropy.scalar_type();
    const at::Tensor grad_out = grads[0].to(acc);
    const int64_t rows = hidden.size(0);
    const at::Tensor weight_acc = weight.to(acc);
    at::Tensor grad_hidden = at::empty_like(hidden);
    at::Tensor grad_weight = at::zeros_like(weight_acc);
    for (int64_t start = 0; start < rows; start += chunk) {
      const int64_t n = std::min(chunk, rows - start);
      const at::Tensor h = hidden.narrow(0, start, n).to(acc);
      const at::Tensor log_p =
          at::log_softmax(at::matmul(h, weight_acc.t()).div_(temperature), -1);  // [n, V]
      const at::Tensor g = grad_out.narrow(0, start, n).unsqueeze(1);            // [n, 1]
      // ∂H/∂logits = −p (log p + H) / T, times the incoming gradient.
      const at::Tensor grad_z =
          log_p.exp() * (log_p + entropy.narrow(0, start, n).unsqueeze(1)) * (-g / temperature);
      grad_hidden.narrow(0, start, n).copy_(at::matmul(grad_z, weight_acc));
      grad_weight.addmm_(grad_z.t(), h);
    }
    return {grad_hidden, grad_weight.to(weight.scalar_type()), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor logprobs_from_logits_in_place(at::Tensor& logits, const at::Tensor& targets, double temperature,
                                         at::Tensor* lse) {
  LVRL_ASSERT(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0) &&
                  (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble),
              fmt::format("logprobs_from_logits(logits {} {}, targets {})", logits.sizes(),
                          logits.scalar_type(), targets.sizes()));
  LVRL_ASSERT(temperature > 0, fmt::format("temperature {}", temperature));
  if (temperature != 1.0) logits.div_(temperature);
  at::Tensor row_lse = at::logsumexp(logits, -1);  // [N]
  at::Tensor out = logits.gather(1, targets.to(logits.device()).unsqueeze(1)).squeeze(1) - row_lse;
  if (lse != nullptr) *lse = row_lse;
  return out;
}

at::Tensor logprobs_from_logits(const at::Tensor& logits, const at::Tensor& targets, double temperature) {
  at::Tensor z = logits.to(accumulation_dtype(logits));
  if (temperature != 1.0 && z.is_same(logits)) z = z.clone();  // the division below is in place
  return logprobs_from_logits_in_place(z, targets, temperature);
}

at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                          const LogprobOptions& options) {
  LVRL_ASSERT(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1) &&
                  targets.dim() == 1 && targets.size(0) == hidden.size(0) &&
                  targets.scalar_type() == at::kLong,
              fmt::format("token_logprobs(hidden {}, weight {}, targets {} {})", hidden.sizes(),
                          weight.sizes(), targets.sizes(), targets.scalar_type()));
  LVRL_ASSERT(options.temperature > 0 && options.chunk > 0,
              fmt::format("temperature {} chunk {}", options.temperature, options.chunk));
  if (targets.numel() > 0) {
    const int64_t low = targets.min().item<int64_t>(), high = targets.max().item<int64_t>();
    if (low < 0 || high >= weight.size(0)) {
      throw InputError({"", 0, "target token", std::to_string(low < 0 ? low : high)},
                       fmt::format("outside the vocabulary of {} tokens", weight.size(0)));
    }
  }
  return ChunkedLogprobs::apply(hidden, weight, targets.to(hidden.device()), options.temperature,
                                options.chunk);
}

at::Tensor token_entropy(const at::Tensor& hidden, const at::Tensor& weight, const LogprobOptions& options) {
  LVRL_ASSERT(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
              fmt::format("token_entropy(hidden {}, weight {})", hidden.sizes(), weight.sizes()));
  LVRL_ASSERT(options.temperature > 0 && options.chunk > 0,
              fmt::format("temperature {} chunk {}", options.temperature, options.chunk));
  return ChunkedEntropy::apply(hidden, weight, options.temperature, options.chunk);
}

}  // namespace lvrl::model
