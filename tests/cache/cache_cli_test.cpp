// `lvrl cache ...` as an operator runs it, against a private server: put/get of safetensors files,
// ls, stats, verify (and --delete), rm; a miss, a wrong password, an unreachable server and a
// missing URL each exit non-zero with a message that says so.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cache/embedding_cache.h"
#include "cache/redis_client.h"
#include "core/safetensors.h"
#include "redis_test_support.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"

namespace lvrl::cache {
namespace {
using test::ProcessResult;
using test::run_lvrl;
using testing::quick_options;
using testing::TestServer;

class CacheCliTest : public ::testing::Test {
 protected:
  std::string url() const { return server_.endpoint().url(); }
  std::string file(const std::string& name) const { return server_.dir() + "/" + name; }
  TestServer server_;
};

TEST_F(CacheCliTest, PutGetLsStatsRm) {
  at::Tensor first = at::arange(12, at::TensorOptions().dtype(at::kFloat)).reshape({3, 4});
  at::Tensor second = at::ones({5}, at::TensorOptions().dtype(at::kBFloat16));
  safetensors::save(file("in.safetensors"), {{"a_first", first}, {"b_second", second}}, {{"source", "test"}});

  ProcessResult put = run_lvrl({"cache", "put", "--url", url(), "--key", "vid/1", file("in.safetensors")});
  EXPECT_EQ(put.exit_code, 0) << put.output;
  EXPECT_NE(put.output.find("stored vid/1"), std::string::npos) << put.output;
  ProcessResult named = run_lvrl(
      {"cache", "put", "--url", url(), "--key", "vid/2", "--tensor", "b_second", file("in.safetensors")});
  EXPECT_EQ(named.exit_code, 0) << named.output;

  ProcessResult get =
      run_lvrl({"cache", "get", "--url", url(), "--key", "vid/2", "--out", file("out.safetensors")});
  ASSERT_EQ(get.exit_code, 0) << get.output;
  auto out = safetensors::File::open(file("out.safetensors"));
  EXPECT_TRUE(at::equal(out->get("b_second"), second));
  EXPECT_EQ(out->metadata().at("source"), "test");
  EXPECT_EQ(out->metadata().at("cache_key"), "vid/2");

  ProcessResult ls = run_lvrl({"cache", "ls", "--url", url(), "--prefix", "vid/"});
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_NE(ls.output.find("vid/1  F32 [3, 4] 48 B in 1 chunk"), std::string::npos) << ls.output;
  EXPECT_NE(ls.output.find("vid/2  BF16 [5]"), std::string::npos) << ls.output;
  ProcessResult stats = run_lvrl({"cache", "stats", "--url", url()});
  EXPECT_EQ(stats.exit_code, 0) << stats.output;
  EXPECT_NE(stats.output.find("entries    2"), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("allkeys-lru"), std::string::npos) << stats.output;

  EXPECT_EQ(run_lvrl({"cache", "rm", "--url", url(), "--key", "vid/1"}).exit_code, 0);
  ProcessResult again = run_lvrl({"cache", "rm", "--url", url(), "--key", "vid/1"});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.output.find("no such entry"), std::string::npos) << again.output;
  ProcessResult miss =
      run_lvrl({"cache", "get", "--url", url(), "--key", "vid/1", "--out", file("x.safetensors")});
  EXPECT_EQ(miss.exit_code, 2);
  EXPECT_NE(miss.output.find("'--key' = 'vid/1': not in the cache"), std::string::npos) << miss.output;
}

TEST_F(CacheCliTest, VerifyReportsAndDeletesBrokenEntries) {
  EmbeddingCache cache(server_.endpoint(), {}, quick_options());
  cache.put("good", at::arange(1000, at::TensorOptions().dtype(at::kInt)));
  cache.put("bad", at::arange(1000, at::TensorOptions().dtype(at::kInt)));
  RedisClient raw(server_.endpoint(), quick_options());
  RedisReply chunks = raw.run(RedisCommand{"KEYS", "lvrl:default:emb:c:bad:*"}, Retry::Idempotent);
  raw.run(RedisCommand{"SETRANGE"}.add(chunks[0].text()).add("5").add("!"), Retry::Idempotent);

  ProcessResult verify = run_lvrl({"cache", "verify", "--url", url()});
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_NE(verify.output.find("BROKEN bad: checksum mismatch"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("verified 2 entries: 1 good, 1 broken"), std::string::npos) << verify.output;
  ProcessResult fix = run_lvrl({"cache", "verify", "--delete", "--url", url()});
  EXPECT_EQ(fix.exit_code, 0) << fix.output;
  EXPECT_NE(fix.output.find("(deleted)"), std::string::npos) << fix.output;
  EXPECT_FALSE(cache.contains("bad"));
  EXPECT_TRUE(cache.contains("good"));
}

TEST_F(CacheCliTest, ConnectionProblemsExitNonZeroWithAClearMessage) {
  RedisEndpoint wrong = server_.endpoint();
  wrong.password = "nope";
  ProcessResult refused = run_lvrl({"cache", "stats", "--url", wrong.url()});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.output.find("refused the password"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("nope"), std::string::npos) << refused.output;

  ProcessResult down = run_lvrl({"cache", "ls", "--url", "unix://" + server_.dir() + "/absent.sock"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.output.find("cannot connect"), std::string::npos) << down.output;

  ProcessResult none = run_lvrl({"cache", "stats"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.output.find("no cache server"), std::string::npos) << none.output;
}

TEST_F(CacheCliTest, UrlFromTheConfig) {
  std::string config = file("run.yaml");
  test::write_file(config, "redis:\n  cache_url: \"" + server_.endpoint().url() + "\"\n  namespace: other\n");
  safetensors::save(file("in.safetensors"), {{"x", at::ones({2})}});
  ASSERT_EQ(run_lvrl({"cache", "put", "--config", config, "--key", "k", file("in.safetensors")}).exit_code,
            0);
  EmbeddingCacheOptions other;
  other.ns = "other";
  EXPECT_TRUE(EmbeddingCache(server_.endpoint(), other, quick_options()).contains("k"));
}

// `cache get` streams: the chunks go to FILE.tmp.<pid> a 16 MiB window at a time and the file is renamed
// only once the checksum matched, so a corrupt entry leaves neither FILE nor a temporary behind.
TEST_F(CacheCliTest, GetStreamsToATemporaryFileRenamedOnlyWhenTheChecksumMatches) {
  EmbeddingCacheOptions options;
  options.chunk_bytes = 1 << 20;  // 20 chunks of 1 MiB: two windows, the second partial
  EmbeddingCache cache(server_.endpoint(), options, quick_options());
  const at::Tensor tensor = at::arange(5 << 20, at::TensorOptions().dtype(at::kInt)).reshape({5, 1 << 20});
  EmbeddingMetadata metadata;
  metadata.extra["tensor"] = "rows";
  cache.put("big", tensor, metadata);
  cache.put("bad", tensor, metadata);
  auto leftovers = [&] {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(server_.dir())) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("out", 0) == 0) names.push_back(name);
    }
    return names;
  };

  ProcessResult get =
      run_lvrl({"cache", "get", "--url", url(), "--key", "big", "--out", file("out.safetensors")});
  ASSERT_EQ(get.exit_code, 0) << get.output;
  auto out = safetensors::File::open(file("out.safetensors"));
  EXPECT_TRUE(at::equal(out->get("rows"), tensor));
  EXPECT_EQ(out->metadata().at("cache_key"), "big");
  EXPECT_EQ(leftovers(), std::vector<std::string>{"out.safetensors"});

  // A chunk of the second window corrupted: the first window is already in the temporary file.
  RedisClient raw(server_.endpoint(), quick_options());
  const std::string writer =
      CacheManifest::from_json(
          raw.run(RedisCommand{"GET", "lvrl:default:emb:m:bad"}, Retry::Idempotent).str())
          .writer;
  raw.run(RedisCommand{"SETRANGE"}.add("lvrl:default:emb:c:bad:" + writer + ":17").add("5").add("!"),
          Retry::Idempotent);
  ProcessResult broken =
      run_lvrl({"cache", "get", "--url", url(), "--key", "bad", "--out", file("out_bad.safetensors")});
  EXPECT_EQ(broken.exit_code, 2) << broken.output;
  EXPECT_NE(broken.output.find("checksum mismatch"), std::string::npos) << broken.output;
  EXPECT_EQ(leftovers(), std::vector<std::string>{"out.safetensors"});
}

}  // namespace
}  // namespace lvrl::cache
