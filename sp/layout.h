// Where each sequence-parallel rank's tokens sit in the global sequence.
//
// Every mode is one layout family: the padded sequence is cut into C chunks of equal length, the
// ring level gives each of the R ring positions its chunks (C = R contiguous: ring i holds chunk i;
// C = 2R zigzag: ring i holds chunks i and 2R−1−i, which balances causal work), and inside a
// Ulysses group of U ranks the group's chunks, concatenated in order, are split into U equal
// contiguous slices, rank u holding slice u. The Ulysses all-to-all then hands every rank of the
// group the group's whole chunk sequence (for a slice of the heads), and the ring runs over chunks.
//   ulysses      U = P, R = 1           ring    U = 1, R = P, contiguous
//   zigzag       U = 1, R = P, zigzag   hybrid  U × R, zigzag when causal
// The sequence is padded at its end to a multiple of C·U tokens; padded keys are masked and padded
// rows carry no loss, so padding never changes a result and receives exactly zero gradient.
#pragma once

#include <ATen/Tensor.h>

#include <string>
#include <vector>

namespace lvrl::sp {

enum class SpMode { Ulysses, Ring, Zigzag, Hybrid };
SpMode parse_sp_mode(const std::string& name);  // InputError naming the value
const char* sp_mode_name(SpMode mode);

struct SequenceLayout {
  SpMode mode = SpMode::Ulysses;
  int ulysses = 1, ring = 1;  // U, R (P = U·R)
  bool zigzag = false;        // C = 2R chunks instead of R
  int64_t length = 0;         // real tokens
  int64_t padded_length = 0;  // multiple of chunks()·U
  bool causal = false;

  // Hybrid zigzags only when causal; ulysses ignores `ring`, ring/zigzag ignore `ulysses`.
  static SequenceLayout make(SpMode mode, int ulysses, int ring, int64_t length, bool causal);

  int ranks() const { return ulysses * ring; }
  int64_t chunks() const { return zigzag ? 2 * ring : ring; }
  int64_t chunk_length() const { return padded_length / chunks(); }
  int64_t local_length() const { return padded_length / ranks(); }
  std::vector<int64_t> ring_chunks(int ring_index) const;  // global chunk ids, in local order
  // Global token index of each local token of SP rank `sp_rank` (= ring_index·U + ulysses_index),
  // [local_length] int64; indices ≥ length are padding.
  at::Tensor token_indices(int sp_rank) const;
};

// full [..., L, ...] (L = layout.length along `dim`) → this rank's part [..., local_length, ...],
// padding rows filled with `pad_value`.
at::Tensor shard(const at::Tensor& full, int64_t dim, const SequenceLayout& layout, int sp_rank,
                 double pad_value = 0);
// The inverse for checks: every rank's part (in SP rank order) → full [..., L, ...], padding dropped.
at::Tensor unshard(const std::vector<at::Tensor>& parts, int64_t dim, const SequenceLayout& layout);

}  // namespace lvrl::sp
