// Activation recompute (gradient checkpointing) for one decoder layer (docs/trainer.md#activation-recompute):
// the forward keeps only the layer's input, and the backward runs the layer again with autograd on and
// differentiates that copy. A training step then holds one [B, S, D] tensor per layer instead of
// every layer's intermediates (q/k/v, the MLP's [B, S, I] activations), for one more forward per layer.
//
// LibTorch's C++ API has no checkpoint utility, so this is a torch::autograd::Function whose inputs
// are the layer input and the layer's trainable parameters; its backward returns the gradients of
// both, and the engine accumulates the parameters' into .grad as for any other node. Parameters are
// inputs (not reached by a nested backward) so they receive gradients even when the layer input
// does not require grad.
//
// The recompute is exact: the same ops on the same inputs, so the output and the gradients equal a
// plain forward's (the layer has no dropout, so there is no random state to replay).
//
// Collectives: the attention backend may be a sequence-parallel one whose forward all-to-alls or
// ring-exchanges with other ranks. The recompute replays that forward inside the backward, so the
// backward issues the forward's collectives again. Every rank recomputes every layer, in the same
// (reverse) layer order, so the collectives match up across ranks; a caller must not recompute on
// some ranks only (TextModelImpl's switch is per model, and every rank builds the same model). The
// backend captured at forward time is the one the recompute uses, even if a ScopedTextAttention has
// restored another by the time backward runs.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>

#include "model/attention.h"
#include "model/rope.h"
#include "model/text_model.h"

namespace lvrl::model {

// x [B, S, D] → the layer's output [B, S, D], as layer->forward(x, rope, *attention, nullptr, index)
// without a KV cache, saving only x, the rope tables and the references needed to run it again.
// Call it with grad mode on (without, there is nothing to save and it just runs the layer).
at::Tensor recompute_decoder_layer(const DecoderLayer& layer, const at::Tensor& x, const RopeTables& rope,
                                   std::shared_ptr<AttentionBackend> attention, int64_t layer_index);

}  // namespace lvrl::model
