// Log-probabilities of chosen tokens without materialising logits for positions nobody asked about.
//
// With a 151k vocabulary, logits for a 32k-token sequence are 19 GB in fp32. Callers pick the rows
// (answer tokens, the last prompt token) and get log p(target) = logit[target]/T − logsumexp(logits/T)
// computed chunk by chunk in fp32. The backward recomputes each chunk's logits instead of storing
// them, so peak memory is O(chunk · V) in both directions.
#pragma once

#include <ATen/Tensor.h>

namespace lvrl::model {

struct LogprobOptions {
  double temperature = 1.0;  // the sampling temperature: log-probs of the distribution sampled from
  int64_t chunk = 1024;      // rows per logits chunk
};

// hidden [N, D] (final-normed states of the rows wanted), weight [V, D] (lm_head), targets [N] int64
// → [N] float32 log-probs (float64 for float64 inputs). Differentiable in hidden and weight.
at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                          const LogprobOptions& options = {});

}  // namespace lvrl::model
