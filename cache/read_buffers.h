// Memory for the tensors EmbeddingCache::get fills.
//
// A fresh tensor is faulted in page by page while the socket data is copied into it; with 4 KB
// pages that costs as much as the transfer itself (measured here: first touch at 1.9 GB/s with
// 4 KB pages, 6-7 GB/s with 2 MB pages, against ~3 GB/s for the transfer). So results of 8 MB and
// more get 2 MB-aligned anonymous mappings advised for transparent huge pages, and freed ones are
// kept in a small pool (at most 8 mappings, 2 GiB in all) for the next get of a similar size, the
// way a caching allocator does: a trainer that reads embeddings step after step then touches no
// new pages at all. Pooled memory holds stale bytes; get overwrites every byte or drops the tensor.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace lvrl::cache {

// An uninitialised CPU tensor of `bytes` = numel × element size. Thread-safe; tensors may be freed
// on any thread. Small ones come from LibTorch's allocator.
at::Tensor allocate_read_tensor(const std::vector<int64_t>& shape, at::ScalarType dtype, uint64_t bytes);

// Unmaps every pooled mapping (tests; a process about to fork a memory-hungry child).
void release_read_buffers();

}  // namespace lvrl::cache
