// Sequence layouts: which global tokens each rank holds, and shard/unshard as exact inverses.
#include "sp/layout.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace lvrl::sp {
namespace {

std::vector<int64_t> indices(const SequenceLayout& layout, int rank) {
  const at::Tensor t = layout.token_indices(rank);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

TEST(SequenceLayout, ContiguousRingPadsToMultipleOfP) {
  const SequenceLayout layout = SequenceLayout::make(SpMode::Ring, 7, 3, 1000, true);
  EXPECT_EQ(layout.ulysses, 1);
  EXPECT_EQ(layout.ring, 3);
  EXPECT_FALSE(layout.zigzag);
  EXPECT_EQ(layout.padded_length, 1002);
  EXPECT_EQ(layout.local_length(), 334);
  EXPECT_EQ(indices(layout, 2).front(), 668);
  EXPECT_EQ(indices(layout, 2).back(), 1001);  // padding
}

TEST(SequenceLayout, ZigzagHoldsChunksIAnd2PMinus1MinusI) {
  const SequenceLayout layout = SequenceLayout::make(SpMode::Zigzag, 1, 2, 8, true);
  EXPECT_EQ(layout.chunks(), 4);
  EXPECT_EQ(layout.ring_chunks(0), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(indices(layout, 0), (std::vector<int64_t>{0, 1, 6, 7}));
  EXPECT_EQ(indices(layout, 1), (std::vector<int64_t>{2, 3, 4, 5}));
}

TEST(SequenceLayout, HybridSplitsTheGroupsChunksAcrossUlyssesRanks) {
  // U = 2, R = 2, causal → zigzag: 4 chunks, padded to a multiple of C·U = 8 → 16, chunks of 4.
  // Ring 0 holds chunks 0 and 3 (tokens 0-3, 12-15), ring 1 chunks 1 and 2 (tokens 4-11).
  const SequenceLayout layout = SequenceLayout::make(SpMode::Hybrid, 2, 2, 10, true);
  EXPECT_TRUE(layout.zigzag);
  EXPECT_EQ(layout.padded_length, 16);
  EXPECT_EQ(indices(layout, 0), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(indices(layout, 1), (std::vector<int64_t>{12, 13, 14, 15}));
  EXPECT_EQ(indices(layout, 2), (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(indices(layout, 3), (std::vector<int64_t>{8, 9, 10, 11}));
  // U = 3: the slices of a ring position's two chunks straddle the chunk boundary.
  const SequenceLayout straddle = SequenceLayout::make(SpMode::Hybrid, 3, 1, 6, true);
  EXPECT_EQ(indices(straddle, 1), (std::vector<int64_t>{2, 3}));
  const SequenceLayout odd = SequenceLayout::make(SpMode::Hybrid, 3, 2, 12, true);  // chunks of 3
  EXPECT_EQ(indices(odd, 1), (std::vector<int64_t>{2, 9}));
  const SequenceLayout full = SequenceLayout::make(SpMode::Hybrid, 2, 2, 10, false);
  EXPECT_FALSE(full.zigzag);
  EXPECT_EQ(full.padded_length, 12);
}

TEST(SequenceLayout, EveryTokenOnceForManyShapes) {
  for (SpMode mode : {SpMode::Ulysses, SpMode::Ring, SpMode::Zigzag, SpMode::Hybrid}) {
    for (int u : {1, 2, 3}) {
      for (int r : {1, 2, 4}) {
        for (int64_t length : {1, 5, 17, 100}) {
          for (bool causal : {false, true}) {
            const SequenceLayout layout = SequenceLayout::make(mode, u, r, length, causal);
            EXPECT_EQ(layout.padded_length % (layout.chunks() * layout.ulysses), 0);
            EXPECT_GE(layout.padded_length, length);
            EXPECT_LT(layout.padded_length - length, layout.chunks() * layout.ulysses);
            std::vector<int64_t> all;
            for (int rank = 0; rank < layout.ranks(); ++rank) {
              const std::vector<int64_t> part = indices(layout, rank);
              all.insert(all.end(), part.begin(), part.end());
            }
            std::sort(all.begin(), all.end());
            std::vector<int64_t> expected(layout.padded_length);
            for (int64_t i = 0; i < layout.padded_length; ++i) expected[i] = i;
            EXPECT_EQ(all, expected) << sp_mode_name(mode) << " U=" << u << " R=" << r << " L=" << length;
          }
        }
      }
    }
  }
}

TEST(SequenceLayout, ShardThenUnshardIsIdentityAndPadsWithValue) {
  const SequenceLayout layout = SequenceLayout::make(SpMode::Hybrid, 2, 3, 50, true);
  const at::Tensor full = at::randn({2, 50, 3, 4}, at::kDouble);
  std::vector<at::Tensor> parts;
  for (int rank = 0; rank < layout.ranks(); ++rank) {
    parts.push_back(shard(full, 1, layout, rank, /*pad_value=*/7));
    EXPECT_EQ(parts.back().size(1), layout.local_length());
  }
  EXPECT_TRUE(at::equal(unshard(parts, 1, layout), full));
  // 60 padded tokens: 50..59 are padding and hold 7.
  const at::Tensor padding = layout.token_indices(1).ge(50).nonzero().view({-1});
  ASSERT_GT(padding.numel(), 0);
  EXPECT_TRUE(parts[1].index_select(1, padding).eq(7).all().item<bool>());
}

TEST(SequenceLayout, BadInputNamesTheValue) {
  EXPECT_THROW(parse_sp_mode("spiral"), InputError);
  EXPECT_THROW(SequenceLayout::make(SpMode::Hybrid, 0, 2, 10, false), InputError);
  EXPECT_THROW(SequenceLayout::make(SpMode::Ring, 1, 2, -1, false), InputError);
  EXPECT_EQ(parse_sp_mode("zigzag"), SpMode::Zigzag);
}

}  // namespace
}  // namespace lvrl::sp
