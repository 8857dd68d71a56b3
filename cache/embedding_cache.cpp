#include "cache/embedding_cache.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "cache/chunk_checksum.h"
#include "cache/read_buffers.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"

namespace lvrl::cache {
namespace {
// Deletes the manifest only if it is still the one the caller read: a reader that found entry A
// broken must not delete entry B that another writer committed since.
constexpr const char* kCompareAndDelete =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
constexpr size_t kKeysPerCommand = 512;                      // UNLINK / EXISTS batch
constexpr uint64_t kMaxEntryBytes = uint64_t{1} << 40;       // a manifest claiming more is corrupt
constexpr uint64_t kMaxChunkBytes = uint64_t{512} << 20;     // Redis' largest string
constexpr uint64_t kStreamWindowBytes = uint64_t{16} << 20;  // read_into's chunks in memory at once

std::string random_writer() {
  thread_local std::mt19937_64 random((uint64_t{std::random_device{}()} << 32) ^ std::random_device{}());
  return fmt::format("{:016x}", random());
}

bool allowed_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '/' || c == '=' || c == '+' || c == '-';
}

[[noreturn]] void fail_redis(const std::string& statement, const std::string& detail) {
  ::lvrl::detail::fail_library("redis", statement.c_str(), "EmbeddingCache", __FILE__, __LINE__, detail);
}

// "used_memory:123\r\n..." → the value of `name`, or "" when INFO has no such line.
std::string info_field(std::string_view info, std::string_view name) {
  for (size_t start = 0; start < info.size();) {
    size_t end = info.find("\r\n", start);
    if (end == std::string_view::npos) end = info.size();
    std::string_view line = info.substr(start, end - start);
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':') {
      return std::string(line.substr(name.size() + 1));
    }
    start = end + 2;
  }
  return "";
}

int64_t info_number(std::string_view info, std::string_view name) {
  std::string text = info_field(info, name);
  return text.empty() ? 0 : std::stoll(text);
}
}  // namespace

std::string glob_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

struct EmbeddingCache::Loaded {
  enum class Status { Miss, Broken, Hit } status = Status::Miss;
  std::string problem;        // Broken: why
  std::string manifest_text;  // as read: for compare-and-delete
  std::optional<CacheManifest> manifest;
  at::Tensor tensor;
};

void EmbeddingCache::check_key(const std::string& key) {
  bool good = !key.empty() && key.size() <= 256 && std::all_of(key.begin(), key.end(), allowed_key_char);
  if (!good)
    throw InputError({"", 0, "cache key", key}, "expected 1-256 characters of A-Z a-z 0-9 . _ / = + -");
}

EmbeddingCache::EmbeddingCache(RedisEndpoint endpoint, EmbeddingCacheOptions options,
                               RedisOptions redis_options)
    : options_(std::move(options)), pool_(std::move(endpoint), redis_options) {
  if (options_.ns.empty() || !std::all_of(options_.ns.begin(), options_.ns.end(), allowed_key_char)) {
    throw InputError({"", 0, "cache namespace", options_.ns},
                     "expected characters of A-Z a-z 0-9 . _ / = + -");
  }
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > (size_t{512} << 20)) {
    throw InputError({"", 0, "chunk_bytes", std::to_string(options_.chunk_bytes)},
                     "expected 1 byte to 512 MiB (Redis' largest string)");
  }
}

std::string EmbeddingCache::manifest_key(const std::string& key) const {
  return "lvrl:" + options_.ns + ":emb:m:" + key;
}

std::string EmbeddingCache::chunk_key(const std::string& key, const std::string& writer,
                                      uint64_t index) const {
  return fmt::format("lvrl:{}:emb:c:{}:{}:{}", options_.ns, key, writer, index);
}

PutResult EmbeddingCache::put(const std::string& key, const at::Tensor& tensor,
                              const EmbeddingMetadata& metadata) {
  check_key(key);
  const InputWhere where{"", 0, "cache key", key};
  if (!tensor.defined() || tensor.layout() != at::kStrided)
    throw InputError(where, "expected a dense tensor");
  if (manifest_dtype_name(tensor.scalar_type()) == nullptr) {
    throw InputError(
        where, fmt::format("cannot cache dtype {}; expected one of BOOL U8 I8 I16 I32 I64 F16 BF16 F32 F64",
                           c10::toString(tensor.scalar_type())));
  }
  if (metadata.grid_thw.size() % 3 != 0) throw InputError(where, "grid_thw must hold (T, H, W) triples");
  const at::Tensor data = tensor.to(at::kCPU).contiguous();
  const auto* payload = static_cast<const char*>(data.data_ptr());

  CacheManifest manifest;
  manifest.dtype = data.scalar_type();
  manifest.shape = data.sizes().vec();
  manifest.bytes = data.nbytes();
  manifest.chunk_bytes = options_.chunk_bytes;
  manifest.chunks = (manifest.bytes + manifest.chunk_bytes - 1) / manifest.chunk_bytes;
  manifest.metadata = metadata;
  const std::string mkey = manifest_key(key);

  RedisPool::Lease lease = pool_.acquire();
  RedisClient& client = *lease;
  // The payload's checksum, fed each chunk in order as it first goes out (its bytes are then hot in
  // the cache), once: resends after a reconnect and later attempts add nothing.
  std::optional<ChunkChecksum> checksum;
  uint64_t hashed = 0;
  auto hash_sent = [&](size_t i) {
    if (i != hashed) return;
    checksum->add(payload + i * manifest.chunk_bytes, manifest.chunk_size(i));
    ++hashed;
  };
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    if (client.run(RedisCommand{"EXISTS", mkey}, Retry::Idempotent).integer() == 1) {
      ++already_present_;
      return PutResult::AlreadyPresent;
    }
    if (!checksum) checksum.emplace(manifest.chunks);
    const uint64_t generation = client.generation();
    manifest.writer = random_writer();

    // 1. The chunks, under this put's own namespace, with a TTL until the commit.
    std::vector<RedisCommand> commands;
    commands.reserve(manifest.chunks);
    for (uint64_t i = 0; i < manifest.chunks; ++i) {
      commands.push_back(RedisCommand{"SET"}
                             .add(chunk_key(key, manifest.writer, i))
                             .add_view(payload + i * manifest.chunk_bytes, manifest.chunk_size(i))
                             .add("PX")
                             .add(static_cast<int64_t>(options_.staging_ttl.count())));
    }
    client.pipeline(
        commands, Retry::Idempotent,
        [&](size_t i, const RedisReply& reply) {
          if (reply.is_error()) fail_redis(commands[i].describe(), reply.str());
          if (options_.on_chunk) options_.on_chunk("put", i);
        },
        {}, hash_sent);
    manifest.checksum = checksum->digest();

    // 2. All still there? PERSIST answers 0 for a chunk that is gone (restart, eviction, TTL).
    commands.clear();
    for (uint64_t i = 0; i < manifest.chunks; ++i)
      commands.push_back(RedisCommand{"PERSIST"}.add(chunk_key(key, manifest.writer, i)));
    uint64_t vanished = 0;
    client.pipeline(commands, Retry::Idempotent, [&](size_t, const RedisReply& reply) {
      if (reply.integer() != 1) ++vanished;
    });
    if (vanished > 0) {
      LVRL_WARN(
          "embedding cache: {} of {} chunks of {} vanished before the commit (server restart or eviction); "
          "attempt {} of {}",
          vanished, manifest.chunks, key, attempt, options_.attempts);
      delete_chunks(client, key, manifest.writer, manifest.chunks);
      continue;
    }

    // 3. The commit marker: the first complete manifest wins.
    manifest.created_unix_ms = now_unix_ms();
    const std::string text = manifest.to_json();
    bool won = false;
    try {
      won = !client.run(RedisCommand{"SET", mkey}.add(text).add("NX"), Retry::Never).is_nil();
    } catch (const RedisConnectionError& e) {
      // The SET may or may not have run; the server knows which manifest is there now.
      RedisReply now = client.run(RedisCommand{"GET", mkey}, Retry::Idempotent);
      if (now.is_nil()) {
        LVRL_WARN("embedding cache: the commit of {} was interrupted ({}); attempt {} of {}", key, e.detail(),
                  attempt, options_.attempts);
        delete_chunks(client, key, manifest.writer, manifest.chunks);
        continue;
      }
      won = now.text() == text;
    }
    if (!won) {
      delete_chunks(client, key, manifest.writer, manifest.chunks);
      ++already_present_;
      return PutResult::AlreadyPresent;
    }
    // A reconnect since step 1 may have crossed a restart between the PERSISTs and the commit.
    if (client.generation() != generation && !chunks_present(client, key, manifest)) {
      LVRL_WARN("embedding cache: chunks of {} vanished around the commit; attempt {} of {}", key, attempt,
                options_.attempts);
      delete_entry(client, key, text, &manifest);
      continue;
    }
    ++stored_;
    bytes_written_ += manifest.bytes;
    return PutResult::Stored;
  }
  fail_redis(
      "EmbeddingCache::put " + key,
      fmt::format("{}: the chunks vanished before the commit in each of {} attempts: the server restarted, "
                  "or evicted them (is its maxmemory larger than {} bytes?)",
                  endpoint().describe(), options_.attempts, manifest.bytes));
}

namespace {
// What is wrong with chunk `index`'s reply (GET of `command`), or "" when it filled its `expected`
// bytes. A server error is not the entry's fault: it throws.
std::string chunk_problem(const wire::BulkReply& chunk, uint64_t index, uint64_t chunks, uint64_t expected,
                          const RedisCommand& command) {
  switch (chunk.kind) {
    case wire::BulkReply::Kind::Nil:
      return fmt::format("chunk {} of {} is missing", index, chunks);
    case wire::BulkReply::Kind::Error:
      fail_redis(command.describe(), chunk.error);
    case wire::BulkReply::Kind::WrongSize:
      return fmt::format("chunk {} has {} bytes, the manifest says {}", index, chunk.size, expected);
    case wire::BulkReply::Kind::Filled:
      return "";
  }
  LVRL_ASSERT(false, "unknown BulkReply kind");
  return "";
}
}  // namespace

EmbeddingCache::Loaded EmbeddingCache::load(RedisClient& client, const std::string& key, PayloadSink* sink) {
  Loaded out;
  RedisReply reply = client.run(RedisCommand{"GET", manifest_key(key)}, Retry::Idempotent);
  if (reply.is_nil()) return out;
  out.status = Loaded::Status::Broken;
  out.manifest_text = reply.str();
  try {
    out.manifest = CacheManifest::from_json(out.manifest_text, manifest_key(key));
  } catch (const InputError& e) {  // only the text's fault: anything else (no memory, a bug) goes up
    out.problem = std::string("unreadable manifest: ") + e.what();
    return out;
  }
  const CacheManifest& manifest = *out.manifest;
  out.problem = manifest.inconsistency();
  if (out.problem.empty() && manifest.bytes > kMaxEntryBytes)
    out.problem = "the manifest claims more than 1 TiB";
  if (!out.problem.empty()) return out;
  if (sink != nullptr) {
    stream(client, key, out, *sink);
    return out;
  }

  at::Tensor tensor = allocate_read_tensor(manifest.shape, manifest.dtype, manifest.bytes);
  auto* destination = static_cast<char*>(tensor.data_ptr());
  std::vector<RedisCommand> commands;
  commands.reserve(manifest.chunks);
  for (uint64_t i = 0; i < manifest.chunks; ++i) {
    commands.push_back(RedisCommand{"GET"}.add(chunk_key(key, manifest.writer, i)));
  }
  std::vector<RedisClient::BulkTarget> targets;
  targets.reserve(manifest.chunks);
  for (uint64_t i = 0; i < manifest.chunks; ++i) {
    targets.push_back({destination + i * manifest.chunk_bytes, manifest.chunk_size(i)});
  }
  ChunkChecksum checksum(manifest.chunks);  // hashes each chunk while the next one arrives
  client.pipeline_get_into(commands, targets, Retry::Idempotent, [&](size_t i, const wire::BulkReply& chunk) {
    if (!out.problem.empty()) return;  // already broken: the rest only drains the pipeline
    out.problem = chunk_problem(chunk, i, manifest.chunks, targets[i].size, commands[i]);
    if (!out.problem.empty()) return;
    checksum.add(targets[i].data, targets[i].size);
    if (options_.on_chunk) options_.on_chunk("get", i);
  });
  if (!out.problem.empty()) return out;
  const std::string digest = checksum.digest();
  if (digest != manifest.checksum) {
    out.problem = fmt::format("checksum mismatch: the payload hashes to {}, the manifest says {}", digest,
                              manifest.checksum);
    return out;
  }
  out.status = Loaded::Status::Hit;
  out.tensor = std::move(tensor);
  return out;
}

void EmbeddingCache::stream(RedisClient& client, const std::string& key, Loaded& out, PayloadSink& sink) {
  const CacheManifest& manifest = *out.manifest;
  if (manifest.chunk_bytes > kMaxChunkBytes) {
    out.problem = fmt::format("chunk_bytes {} exceeds what a Redis string holds", manifest.chunk_bytes);
    return;
  }
  // One window of chunks in memory at a time, hashed inline: the sink (a file) is the slow side.
  const uint64_t window =
      std::max<uint64_t>(1, kStreamWindowBytes / std::max<uint64_t>(manifest.chunk_bytes, 1));
  std::vector<char> buffer(std::min(window * manifest.chunk_bytes, manifest.bytes));
  Hasher hasher;
  sink.begin(manifest);
  for (uint64_t first = 0; first < manifest.chunks; first += window) {
    const uint64_t count = std::min(window, manifest.chunks - first);
    std::vector<RedisCommand> commands;
    std::vector<RedisClient::BulkTarget> targets;
    char* end = buffer.data();
    for (uint64_t i = first; i < first + count; ++i) {
      commands.push_back(RedisCommand{"GET"}.add(chunk_key(key, manifest.writer, i)));
      targets.push_back({end, manifest.chunk_size(i)});
      end += manifest.chunk_size(i);
    }
    client.pipeline_get_into(
        commands, targets, Retry::Idempotent, [&](size_t j, const wire::BulkReply& chunk) {
          if (!out.problem.empty()) return;  // already broken: the rest only drains the pipeline
          out.problem = chunk_problem(chunk, first + j, manifest.chunks, targets[j].size, commands[j]);
          if (!out.problem.empty()) return;
          hasher.update(targets[j].data, targets[j].size);
          if (options_.on_chunk) options_.on_chunk("get", first + j);
        });
    if (!out.problem.empty()) return;
    sink.write(buffer.data(), static_cast<size_t>(end - buffer.data()));
  }
  const std::string digest = hasher.digest().hex();
  if (digest != manifest.checksum) {
    out.problem = fmt::format("checksum mismatch: the payload hashes to {}, the manifest says {}", digest,
                              manifest.checksum);
    return;
  }
  out.status = Loaded::Status::Hit;
}

EmbeddingCache::Loaded EmbeddingCache::load_settled(RedisClient& client, const std::string& key,
                                                    const char* operation, PayloadSink* sink) {
  // A read that spans a reconnect may mix a restarted server's state with the old one: read again.
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    const uint64_t generation = client.generation();
    Loaded loaded = load(client, key, sink);
    if (client.generation() == generation) return loaded;
    LVRL_WARN("embedding cache: reconnected while reading {}; reading it again (attempt {} of {})", key,
              attempt, options_.attempts);
  }
  fail_redis(fmt::format("EmbeddingCache::{} {}", operation, key),
             fmt::format("{}: the connection dropped during each of {} reads", endpoint().describe(),
                         options_.attempts));
}

bool EmbeddingCache::settle(RedisClient& client, const std::string& key, Loaded& loaded) {
  switch (loaded.status) {
    case Loaded::Status::Miss:
      ++misses_;
      return false;
    case Loaded::Status::Broken:
      LVRL_WARN("embedding cache: entry {} is broken ({}); deleting it", key, loaded.problem);
      delete_entry(client, key, loaded.manifest_text, loaded.manifest ? &*loaded.manifest : nullptr);
      ++broken_;
      ++misses_;
      return false;
    case Loaded::Status::Hit:
      break;
  }
  ++hits_;
  bytes_read_ += loaded.manifest->bytes;
  return true;
}

std::optional<CachedEmbedding> EmbeddingCache::get(const std::string& key) {
  check_key(key);
  RedisPool::Lease lease = pool_.acquire();
  Loaded loaded = load_settled(*lease, key, "get");
  if (!settle(*lease, key, loaded)) return std::nullopt;
  return CachedEmbedding{std::move(loaded.tensor), std::move(*loaded.manifest)};
}

std::optional<CacheManifest> EmbeddingCache::read_into(const std::string& key, PayloadSink& sink) {
  check_key(key);
  RedisPool::Lease lease = pool_.acquire();
  Loaded loaded = load_settled(*lease, key, "read_into", &sink);
  if (!settle(*lease, key, loaded)) return std::nullopt;
  return std::move(*loaded.manifest);
}

std::string EmbeddingCache::verify(const std::string& key, bool delete_broken) {
  check_key(key);
  RedisPool::Lease lease = pool_.acquire();
  RedisClient& client = *lease;
  Loaded loaded = load_settled(client, key, "verify");
  if (loaded.status == Loaded::Status::Miss) return "no such entry";
  if (loaded.status == Loaded::Status::Hit) return "";
  if (delete_broken)
    delete_entry(client, key, loaded.manifest_text, loaded.manifest ? &*loaded.manifest : nullptr);
  return loaded.problem;
}

bool EmbeddingCache::chunks_present(RedisClient& client, const std::string& key,
                                    const CacheManifest& manifest) {
  std::vector<RedisCommand> commands;
  for (uint64_t i = 0; i < manifest.chunks; ++i) {
    if (i % kKeysPerCommand == 0) commands.push_back(RedisCommand{"EXISTS"});
    commands.back().add(chunk_key(key, manifest.writer, i));
  }
  uint64_t present = 0;
  client.pipeline(commands, Retry::Idempotent, [&](size_t, const RedisReply& reply) {
    present += static_cast<uint64_t>(reply.integer());
  });
  return present == manifest.chunks;
}

bool EmbeddingCache::contains(const std::string& key) {
  check_key(key);
  RedisPool::Lease lease = pool_.acquire();
  RedisReply reply = lease->run(RedisCommand{"GET", manifest_key(key)}, Retry::Idempotent);
  if (reply.is_nil()) return false;
  std::optional<CacheManifest> manifest;
  try {
    manifest = CacheManifest::from_json(reply.text(), manifest_key(key));
  } catch (const InputError&) {
    return false;  // unreadable: get() will find it broken and delete it
  }
  return manifest->inconsistency().empty() && chunks_present(*lease, key, *manifest);
}

void EmbeddingCache::delete_chunks(RedisClient& client, const std::string& key, const std::string& writer,
                                   uint64_t chunks) {
  std::vector<RedisCommand> commands;
  for (uint64_t i = 0; i < chunks; ++i) {
    if (i % kKeysPerCommand == 0) commands.push_back(RedisCommand{"UNLINK"});
    commands.back().add(chunk_key(key, writer, i));
  }
  client.pipeline(commands, Retry::Idempotent, [](size_t, const RedisReply&) {});
}

size_t EmbeddingCache::delete_matching(RedisClient& client, const std::string& pattern) {
  size_t deleted = 0;
  std::string cursor = "0";
  do {
    RedisReply page =
        client.run(RedisCommand{"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}, Retry::Idempotent);
    cursor = page[0].str();
    RedisReply keys = page[1];
    if (keys.size() == 0) continue;
    RedisCommand unlink{"UNLINK"};
    for (size_t i = 0; i < keys.size(); ++i) unlink.add(keys[i].text());
    deleted += static_cast<size_t>(client.run(unlink, Retry::Idempotent).integer());
  } while (cursor != "0");
  return deleted;
}

void EmbeddingCache::delete_entry(RedisClient& client, const std::string& key,
                                  const std::string& manifest_text, const CacheManifest* manifest) {
  client.run(RedisCommand{"EVAL", kCompareAndDelete, "1", manifest_key(key)}.add(manifest_text),
             Retry::Idempotent);
  if (manifest != nullptr && !manifest->writer.empty() && manifest->inconsistency().empty()) {
    delete_chunks(client, key, manifest->writer, manifest->chunks);
  } else {  // the manifest cannot say where its chunks are: every chunk of the key goes
    delete_matching(client, fmt::format("lvrl:{}:emb:c:{}:*", options_.ns, glob_escape(key)));
  }
}

bool EmbeddingCache::remove(const std::string& key) {
  check_key(key);
  RedisPool::Lease lease = pool_.acquire();
  RedisClient& client = *lease;
  RedisReply reply = client.run(RedisCommand{"GET", manifest_key(key)}, Retry::Idempotent);
  bool existed = !reply.is_nil();
  if (existed)
    client.run(RedisCommand{"EVAL", kCompareAndDelete, "1", manifest_key(key)}.add(reply.text()),
               Retry::Idempotent);
  // Every writer's chunks: the committed one's and those of unfinished puts.
  existed |= delete_matching(client, fmt::format("lvrl:{}:emb:c:{}:*", options_.ns, glob_escape(key))) > 0;
  return existed;
}

std::vector<CacheEntry> EmbeddingCache::list(const std::string& prefix) {
  if (!std::all_of(prefix.begin(), prefix.end(), allowed_key_char)) {
    throw InputError({"", 0, "prefix", prefix}, "expected characters of A-Z a-z 0-9 . _ / = + -");
  }
  RedisPool::Lease lease = pool_.acquire();
  RedisClient& client = *lease;
  const std::string head = manifest_key("");
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    RedisReply page =
        client.run(RedisCommand{"SCAN", cursor, "MATCH", head + glob_escape(prefix) + "*", "COUNT", "1000"},
                   Retry::Idempotent);
    cursor = page[0].str();
    for (size_t i = 0; i < page[1].size(); ++i) keys.push_back(page[1][i].str());
  } while (cursor != "0");
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());  // SCAN may repeat a key

  std::vector<RedisCommand> commands;
  for (const std::string& key : keys) commands.push_back(RedisCommand{"GET", key});
  std::vector<CacheEntry> entries;
  client.pipeline(commands, Retry::Idempotent, [&](size_t i, const RedisReply& reply) {
    if (reply.is_nil()) return;  // deleted since the SCAN
    CacheEntry entry;
    entry.key = keys[i].substr(head.size());
    try {
      entry.manifest = CacheManifest::from_json(reply.text(), keys[i]);
      entry.problem = entry.manifest->inconsistency();
    } catch (const InputError& e) {
      entry.problem = std::string("unreadable manifest: ") + e.what();
    }
    entries.push_back(std::move(entry));
  });
  return entries;
}

CacheStats EmbeddingCache::stats() {
  CacheStats out;
  out.hits = hits_;
  out.misses = misses_;
  out.broken = broken_;
  out.stored = stored_;
  out.already_present = already_present_;
  out.bytes_written = bytes_written_;
  out.bytes_read = bytes_read_;
  RedisPool::Lease lease = pool_.acquire();
  std::string info = lease->run(RedisCommand{"INFO", "memory"}, Retry::Idempotent).str() +
                     lease->run(RedisCommand{"INFO", "stats"}, Retry::Idempotent).str();
  out.used_memory = info_number(info, "used_memory");
  out.maxmemory = info_number(info, "maxmemory");
  out.maxmemory_policy = info_field(info, "maxmemory_policy");
  out.evicted_keys = info_number(info, "evicted_keys");
  out.server_keys = lease->run(RedisCommand{"DBSIZE"}, Retry::Idempotent).integer();
  return out;
}

}  // namespace lvrl::cache
