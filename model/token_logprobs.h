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

// The per-row arithmetic both sides use, so the sampler's log-probs are the trainer's: logits [N, V],
// targets [N] int64 → log p(target) = logit[target]/T − logsumexp(logits/T) [N], in float32 (float64
// for float64 logits; other dtypes are widened to float32). token_logprobs applies it chunk by chunk.
at::Tensor logprobs_from_logits(const at::Tensor& logits, const at::Tensor& targets, double temperature);

// The same, dividing `logits` (already in float32 / float64) by T in place to spare an [N, V] copy;
// `lse`, when given, receives logsumexp(logits/T) [N].
at::Tensor logprobs_from_logits_in_place(at::Tensor& logits, const at::Tensor& targets, double temperature,
                                         at::Tensor* lse = nullptr);

// hidden [N, D] (final-normed states of the rows wanted), weight [V, D] (lm_head), targets [N] int64
// → [N] float32 log-probs (float64 for float64 inputs). Differentiable in hidden and weight.
at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                          const LogprobOptions& options = {});

// The entropy of each row's distribution softmax(hidden·weightᵀ / T), [N] in float32 (float64 for
// float64 inputs), nats; differentiable in hidden and weight with the same chunking and recompute.
at::Tensor token_entropy(const at::Tensor& hidden, const at::Tensor& weight,
                         const LogprobOptions& options = {});

}  // namespace lvrl::model
