// What the cache does with data that is not what it should be: a manifest or a rollout entry with a
// bad field (a format-1 rollout entry among them) is an InputError naming that field, and only that
// error makes an entry "broken" (a miss, deleted) or "undecodable" (dead-lettered). Running out of
// memory while parsing, or a bug, is not the entry's fault: it must reach the caller and leave the
// entry alone.
//
// Out of memory is injected by this binary's operator new: armed on one thread with an exact
// allocation size, it throws std::bad_alloc once for that size. The sizes used here (a 200000-byte
// name plus its terminator) occur only where the parser copies that name.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>

#include "cache/cache_manifest.h"
#include "cache/embedding_cache.h"
#include "cache/redis_client.h"
#include "cache/rollout_record.h"
#include "cache/rollout_stream.h"
#include "core/error.h"
#include "redis_test_support.h"
#include "rollout_groups.h"
#include "tests/support/expect_error.h"

namespace {
thread_local size_t fail_allocation_of = 0;  // 0: nothing armed
}  // namespace

void* operator new(size_t size) {
  if (size != 0 && size == fail_allocation_of) {
    fail_allocation_of = 0;
    throw std::bad_alloc();
  }
  if (void* memory = std::malloc(size == 0 ? 1 : size)) return memory;
  throw std::bad_alloc();
}

namespace lvrl::cache {
namespace {
using test::expect_input_error;
using testing::quick_options;
using testing::TestServer;

constexpr size_t kLongName = 200000;  // a key no other allocation of these tests has the size of

std::string good_manifest() {
  CacheManifest m;
  m.writer = "0123456789abcdef";
  m.shape = {2, 3};
  m.bytes = 24;
  m.chunk_bytes = 24;
  m.chunks = 1;
  m.checksum = std::string(32, 'a');
  return m.to_json();
}

std::string with_field(std::string text, const std::string& field, const std::string& value) {
  const std::string head = "\"" + field + "\":";
  const size_t begin = text.find(head) + head.size();
  size_t end = begin;
  for (int depth = 0; depth > 0 || (text[end] != ',' && text[end] != '}'); ++end) {
    if (text[end] == '[' || text[end] == '{') ++depth;
    if (text[end] == ']' || text[end] == '}') --depth;
  }
  return text.replace(begin, end - begin, value);
}

TEST(ManifestParsing, ABadFieldIsAnInputErrorNamingIt) {
  ASSERT_NO_THROW(CacheManifest::from_json(good_manifest(), "m:k"));
  const std::pair<const char*, const char*> bad[] = {
      {"dtype", "\"X99\""}, {"shape", "\"two by three\""}, {"bytes", "[24]"},
      {"format", "2"},      {"extra", "{\"a\": 1}"},       {"frame_timestamps", "[\"t\"]"},
  };
  for (const auto& [field, value] : bad) {
    SCOPED_TRACE(field);
    const std::string text =
        expect_input_error(
            [&] { CacheManifest::from_json(with_field(good_manifest(), field, value), "m:k"); }, field)
            .what();
    EXPECT_EQ(text.rfind(std::string("m:k: '") + field + "'", 0), 0u) << text;  // the file, then the field
  }
  std::string no_checksum = good_manifest();
  no_checksum.replace(no_checksum.find("\"checksum\""), 1, "\"_");
  expect_input_error([&] { CacheManifest::from_json(no_checksum); }, "checksum");
  const std::string not_json = expect_input_error([] { CacheManifest::from_json("{not json"); }, "").what();
  EXPECT_NE(not_json.find("JSON object"), std::string::npos) << not_json;
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

TEST(RolloutRecordParsing, ABadFieldIsAnInputErrorNamingIt) {
  const StreamFields fields = encode_rollout(testing::example_group(0));
  ASSERT_NO_THROW(decode_rollout(fields));
  auto changed = [&](const std::string& name, const std::string& value) {
    StreamFields out = fields;
    bool found = false;
    for (auto& [field, text] : out) {
      if (field == name) {
        text = value;
        found = true;
      }
    }
    EXPECT_TRUE(found) << name;
    return out;
  };
  // The example's prompt ids with the first marker replaced by a raw <|video_pad|>.
  std::vector<int32_t> uncollapsed = testing::example_group(0).prompt_ids;
  uncollapsed[3] = testing::kVideoPad;
  const std::pair<StreamFields, const char*> bad[] = {
      {changed("format", "1"), "format"},
      {changed("format", "two"), "format"},
      {changed("group", ""), "group"},
      {changed("version", "7x"), "version"},
      {changed("prompt_ids", "abc"), "prompt_ids"},  // 3 bytes: not int32s
      {changed("prompt_ids", bytes_of(uncollapsed)), "prompt_ids"},
      {changed("prompt_ids", ""), "prompt_ids"},
      {changed("video_pad", "pad"), "video_pad"},
      {changed("merge", "0"), "merge"},
      {changed("grids", "2x4"), "grids"},
      {changed("grids", "2x4x5,1x2x2"), "grids"},  // w not a multiple of the merge size
      {changed("grids", "2x4x6"), "grids"},        // one grid for two markers
      {changed("second_per_grid_ts", "2"), "second_per_grid_ts"},
      {changed("second_per_grid_ts", "2,zero"), "second_per_grid_ts"},
      {changed("second_per_grid_ts", "2,-1"), "second_per_grid_ts"},
      {changed("embedding", ""), "embedding"},
      {changed("sampling.temperature", "hot"), "sampling.temperature"},
      {changed("sampling.top_p", "1.5"), "sampling.top_p"},
      {changed("sampling.min_p", "-0.1"), "sampling.min_p"},
      {changed("sampling.top_k", "-1"), "sampling.top_k"},
      {changed("sampling.max_new_tokens", "0"), "sampling.max_new_tokens"},
      {changed("sampling.max_new_tokens", "6"), "s2.response"},  // sample 2 has 7 tokens
      {changed("samples", "0"), "samples"},
      {changed("samples", "4"), "s3.response"},  // a fourth sample that is not there
      {changed("samples", "2"), "s2.finish"},    // a third sample that should not be (first by name)
      {changed("s0.response", bytes_of(std::vector<int32_t>{1, 2, -3, 4})), "s0.response"},
      {changed("s0.logprobs", bytes_of(std::vector<float>{-1})), "s0.logprobs"},  // 1 log-prob, 4 tokens
      {changed("s1.sampled_logprobs", bytes_of(std::vector<float>{0.5f})), "s1.sampled_logprobs"},
      {changed("s2.finish", "eos"), "s2.finish"},
      {changed("s0.reward", "high"), "s0.reward"},
      {changed("s0.reward.format", "half"), "s0.reward.format"},
      {changed("s1.seed", "-1"), "s1.seed"},
  };
  for (const auto& [entry, field] : bad) {
    SCOPED_TRACE(field);
    expect_input_error([&] { decode_rollout(entry); }, field);
  }
  auto with = [&](const std::string& name, const std::string& value) {
    StreamFields out = fields;
    out.emplace_back(name, value);
    return out;
  };
  expect_input_error([&] { decode_rollout(with("garbage", "1")); }, "garbage");
  expect_input_error([&] { decode_rollout(with("s9.reward.accuracy", "1")); }, "s9.reward.accuracy");
  expect_input_error([&] { decode_rollout(with("group", "g0")); }, "group");  // repeated
  for (const char* name : {"version", "format", "s1.seed", "sampling.top_k"}) {
    SCOPED_TRACE(name);
    StreamFields without = fields;
    without.erase(
        std::find_if(without.begin(), without.end(), [&](const auto& f) { return f.first == name; }));
    expect_input_error([&] { decode_rollout(without); }, name);
  }
}

TEST(RolloutRecordParsing, AFormatOneEntryIsRefusedNamingFormat) {
  // One answer per entry, as format 1 wrote it.
  const StreamFields format_one = {{"id", "r1"},
                                   {"prompt", "p0"},
                                   {"version", "3"},
                                   {"tokens", bytes_of(std::vector<int32_t>{1, 2})},
                                   {"logprobs", bytes_of(std::vector<float>{-0.5f, -0.25f})},
                                   {"reward", "1"},
                                   {"embedding", ""}};
  const std::string text = expect_input_error([&] { decode_rollout(format_one); }, "format").what();
  EXPECT_NE(text.find("format-1"), std::string::npos) << text;
}

TEST(CacheParseFailures, OutOfMemoryInAManifestReachesTheCallerAndKeepsTheEntry) {
  TestServer server;
  EmbeddingCache cache(server.endpoint(), {}, quick_options());
  EmbeddingMetadata metadata;
  metadata.extra[std::string(kLongName, 'k')] = "v";
  cache.put("k", at::arange(10, at::TensorOptions().dtype(at::kFloat)), metadata);

  fail_allocation_of = kLongName + 1;  // the parser's copy of the long key
  EXPECT_THROW(cache.get("k"), std::bad_alloc);
  EXPECT_EQ(fail_allocation_of, 0u) << "the injected failure never happened: the test checks nothing";
  fail_allocation_of = kLongName + 1;
  EXPECT_THROW(cache.list(), std::bad_alloc);
  EXPECT_EQ(fail_allocation_of, 0u);
  fail_allocation_of = 0;

  EXPECT_EQ(cache.stats().broken, 0u);
  std::optional<CachedEmbedding> hit = cache.get("k");  // not deleted as broken
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->manifest.metadata.extra.size(), 1u);
}

TEST(CacheParseFailures, OutOfMemoryInARolloutReachesTheCallerAndIsNotDeadLettered) {
  TestServer server(RedisRole::Queue, "0");
  RolloutStreamOptions options;
  options.max_deliveries = 3;
  RolloutGroup group = testing::example_group(1);
  group.extra[std::string(kLongName, 'x')] = "v";
  RolloutProducer(server.endpoint(), options, quick_options()).publish(group);

  RolloutConsumer consumer(server.endpoint(), "trainer-0", options, quick_options());
  fail_allocation_of = kLongName + 1;  // decode_rollout's copy of the extra field's name
  EXPECT_THROW(consumer.read(10, std::chrono::milliseconds(100)), std::bad_alloc);
  EXPECT_EQ(fail_allocation_of, 0u) << "the injected failure never happened: the test checks nothing";
  fail_allocation_of = 0;
  RedisClient raw(server.endpoint(), quick_options());
  EXPECT_EQ(raw.run(RedisCommand{"XLEN", "lvrl:default:rollouts:dead"}, Retry::Idempotent).integer(), 0);
  EXPECT_EQ(raw.run(RedisCommand{"XLEN", "lvrl:default:rollouts"}, Retry::Idempotent).integer(), 1);
}

}  // namespace
}  // namespace lvrl::cache
