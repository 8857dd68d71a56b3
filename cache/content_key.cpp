#include "cache/content_key.h"

#include "core/error.h"
#include "core/safetensors.h"

namespace lvrl::cache {
namespace {
enum Tag : uint64_t { kVideo = 1, kSampling = 2, kPreprocessing = 3, kEncoder = 4, kTensor = 5 };

void feed(Hasher& hasher, Tag tag, std::string_view bytes) {
  hasher.update_u64(tag).update_u64(bytes.size()).update(bytes);
}
}  // namespace

std::string embedding_key(const EmbeddingKeyParts& parts) {
  LVRL_ASSERT(!parts.sampling.empty() && !parts.preprocessing.empty() && !parts.encoder.empty(),
              "an embedding key needs the sampling, preprocessing and encoder parts");
  Hasher hasher;
  hasher.update(std::string_view("lvrl-embedding-key-v1"));
  hasher.update_u64(kVideo).update_u64(parts.video.high).update_u64(parts.video.low);
  feed(hasher, kSampling, parts.sampling);
  feed(hasher, kPreprocessing, parts.preprocessing);
  feed(hasher, kEncoder, parts.encoder);
  return "emb1-" + hasher.digest().hex();
}

std::string encoder_fingerprint(const std::map<std::string, at::Tensor>& weights) {
  Hasher hasher;
  hasher.update(std::string_view("lvrl-encoder-fingerprint-v1"));
  for (const auto& [name, weight] : weights) {  // std::map: name order
    const at::Tensor data = weight.to(at::kCPU).contiguous();
    const char* dtype = safetensors::dtype_name(data.scalar_type());
    feed(hasher, kTensor, name);
    feed(hasher, kTensor, dtype != nullptr ? dtype : c10::toString(data.scalar_type()));
    hasher.update_u64(static_cast<uint64_t>(data.dim()));
    for (int64_t size : data.sizes()) hasher.update_u64(static_cast<uint64_t>(size));
    hasher.update_u64(data.nbytes()).update(data.data_ptr(), data.nbytes());
  }
  return hasher.digest().hex();
}

}  // namespace lvrl::cache
