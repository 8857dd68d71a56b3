// Sequence layouts: which global tokens each SP rank holds (see layout.h for the chunk scheme).
//
// Everything is derived from token_indices(): shard pads and gathers with it, unshard scatters back
// with it, and the attention only needs the chunk ids and the real length, so the three can never
// disagree about where a token lives.
#include "sp/layout.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace lvrl::sp {

SpMode parse_sp_mode(const std::string& name) {
  if (name == "ulysses") return SpMode::Ulysses;
  if (name == "ring") return SpMode::Ring;
  if (name == "zigzag") return SpMode::Zigzag;
  if (name == "hybrid") return SpMode::Hybrid;
  throw InputError({"", 0, "mode", name}, "expected ulysses, ring, zigzag or hybrid");
}

const char* sp_mode_name(SpMode mode) {
  switch (mode) {
    case SpMode::Ulysses:
      return "ulysses";
    case SpMode::Ring:
      return "ring";
    case SpMode::Zigzag:
      return "zigzag";
    case SpMode::Hybrid:
      return "hybrid";
  }
  return "?";
}

SequenceLayout SequenceLayout::make(SpMode mode, int ulysses, int ring, int64_t length, bool causal) {
  SequenceLayout layout;
  layout.mode = mode;
  layout.causal = causal;
  layout.length = length;
  switch (mode) {
    case SpMode::Ulysses:
      layout.ulysses = ulysses;
      layout.ring = 1;
      break;
    case SpMode::Ring:
    case SpMode::Zigzag:
      layout.ulysses = 1;
      layout.ring = ring;
      layout.zigzag = mode == SpMode::Zigzag;
      break;
    case SpMode::Hybrid:
      layout.ulysses = ulysses;
      layout.ring = ring;
      layout.zigzag = causal;
      break;
  }
  if (layout.ulysses < 1) {
    throw InputError({"", 0, "ulysses", std::to_string(layout.ulysses)},
                     fmt::format("the Ulysses degree of SP mode {} must be at least 1", sp_mode_name(mode)));
  }
  if (layout.ring < 1) {
    throw InputError({"", 0, "ring", std::to_string(layout.ring)},
                     fmt::format("the ring degree of SP mode {} must be at least 1", sp_mode_name(mode)));
  }
  if (length < 0)
    throw InputError({"", 0, "length", std::to_string(length)}, "a sequence length must be >= 0");
  const int64_t quantum = layout.chunks() * layout.ulysses;
  layout.padded_length = (length + quantum - 1) / quantum * quantum;
  return layout;
}

std::vector<int64_t> SequenceLayout::ring_chunks(int ring_index) const {
  LVRL_ASSERT(ring_index >= 0 && ring_index < ring,
              fmt::format("ring index {} outside [0, R = {})", ring_index, ring));
  if (!zigzag) return {ring_index};
  return {ring_index, 2 * static_cast<int64_t>(ring) - 1 - ring_index};
}

at::Tensor SequenceLayout::token_indices(int sp_rank) const {
  LVRL_ASSERT(sp_rank >= 0 && sp_rank < ranks(),
              fmt::format("SP rank {} outside [0, P = {})", sp_rank, ranks()));
  const std::vector<int64_t> chunks = ring_chunks(sp_rank / ulysses);
  const int64_t chunk = chunk_length(), local = local_length();
  // Rank u of the Ulysses group holds slice u of the group's chunks concatenated in order.
  const int64_t first = (sp_rank % ulysses) * local;
  std::vector<int64_t> indices(local);
  for (int64_t t = 0; t < local; ++t) {
    const int64_t position = first + t;
    indices[t] = chunks[position / chunk] * chunk + position % chunk;
  }
  return at::tensor(indices, at::kLong);
}

at::Tensor shard(const at::Tensor& full, int64_t dim, const SequenceLayout& layout, int sp_rank,
                 double pad_value) {
  LVRL_ASSERT(dim >= 0 && dim < full.dim() && full.size(dim) == layout.length,
              fmt::format("shard: dimension {} of {} must hold the layout's {} tokens", dim,
                          c10::str(full.sizes()), layout.length));
  std::vector<int64_t> sizes = full.sizes().vec();
  sizes[dim] = layout.padded_length;
  at::Tensor padded = at::full(sizes, pad_value, full.options());
  padded.narrow(dim, 0, layout.length).copy_(full);
  return padded.index_select(dim, layout.token_indices(sp_rank).to(full.device()));
}

at::Tensor unshard(const std::vector<at::Tensor>& parts, int64_t dim, const SequenceLayout& layout) {
  LVRL_ASSERT(static_cast<int>(parts.size()) == layout.ranks(),
              fmt::format("unshard: {} parts for {} ranks", parts.size(), layout.ranks()));
  std::vector<int64_t> sizes = parts.front().sizes().vec();
  LVRL_ASSERT(dim >= 0 && dim < static_cast<int64_t>(sizes.size()),
              fmt::format("unshard: no dimension {}", dim));
  sizes[dim] = layout.padded_length;
  at::Tensor padded = at::zeros(sizes, parts.front().options());
  for (int r = 0; r < layout.ranks(); ++r) {
    LVRL_ASSERT(parts[r].size(dim) == layout.local_length(),
                fmt::format("unshard: part {} has {} tokens along dimension {}, the layout {}", r,
                            parts[r].size(dim), dim, layout.local_length()));
    padded.index_copy_(dim, layout.token_indices(r).to(padded.device()), parts[r]);
  }
  return padded.narrow(dim, 0, layout.length).contiguous();
}

}  // namespace lvrl::sp
