// `lvrl cache stats|ls|verify|rm|put|get`: the operator's view of an embedding cache server.
// Every command takes --url, or --config whose redis.cache_url names the server; a miss or a
// connection failure is a non-zero exit with the reason on stderr (2: bad input or no such entry;
// 1: the server could not be reached).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <ctime>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cache/embedding_cache.h"
#include "cache/redis_config.h"
#include "core/command.h"
#include "core/config.h"
#include "core/error.h"
#include "core/human_bytes.h"
#include "core/safetensors.h"
#include "core/tensor_format.h"

namespace lvrl::cache {
namespace {

struct ServerArgs {
  std::string url, config_path, ns;
};

void add_server_options(CLI::App& app, ServerArgs& args) {
  app.add_option("--url", args.url, "cache server URL (default: the config's redis.cache_url)");
  app.add_option("--config", args.config_path, "YAML config whose redis section names the server")
      ->check(CLI::ExistingFile);
  app.add_option("--namespace", args.ns, "key namespace (default: the config's redis.namespace)");
}

EmbeddingCache open_cache(const ServerArgs& args) {
  Config config = Config::load(args.config_path);
  std::optional<RedisEndpoint> endpoint;
  if (!args.url.empty()) {
    try {
      endpoint = RedisEndpoint::parse(args.url);
    } catch (const InputError& e) {
      throw InputError({"", 0, "--url", e.value()}, e.problem());
    }
  } else {
    endpoint = configured_endpoint(config, "redis.cache_url");
  }
  if (!endpoint) {
    throw InputError({args.config_path, 0, "--url", ""},
                     "no cache server: give --url, or a --config whose redis.cache_url is set");
  }
  EmbeddingCacheOptions options = cache_options_from(config);
  if (!args.ns.empty()) options.ns = args.ns;
  return EmbeddingCache(*endpoint, options, redis_options_from(config));
}

std::string utc_time(int64_t unix_ms) {
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string describe_entry(const CacheManifest& m) {
  return fmt::format("{} [{}] {} in {} chunk{}", manifest_dtype_name(m.dtype), fmt::join(m.shape, ", "),
                     human_bytes(static_cast<double>(m.bytes)), m.chunks, m.chunks == 1 ? "" : "s");
}

const RegisterCommand stats_command(
    "cache stats", "Entries, memory and evictions of a cache server", [](CLI::App& app) {
      auto args = std::make_shared<ServerArgs>();
      add_server_options(app, *args);
      return [args] {
        EmbeddingCache cache = open_cache(*args);
        std::vector<CacheEntry> entries = cache.list();
        uint64_t bytes = 0, chunks = 0, unreadable = 0;
        for (const CacheEntry& entry : entries) {
          if (!entry.manifest || !entry.problem.empty()) {
            ++unreadable;
            continue;
          }
          bytes += entry.manifest->bytes;
          chunks += entry.manifest->chunks;
        }
        CacheStats stats = cache.stats();
        std::cout << fmt::format("server     {}\nnamespace  {}\n", cache.endpoint().describe(),
                                 cache.options().ns);
        std::cout << fmt::format("entries    {} ({} in {} chunks){}\n", entries.size(),
                                 human_bytes(static_cast<double>(bytes)), chunks,
                                 unreadable > 0 ? fmt::format(", {} with a bad manifest", unreadable) : "");
        std::cout << fmt::format("keys       {} in the database (all namespaces)\n", stats.server_keys);
        std::cout << fmt::format(
            "memory     {} used of {} ({}), {} keys evicted since the server started\n",
            human_bytes(static_cast<double>(stats.used_memory)),
            stats.maxmemory > 0 ? human_bytes(static_cast<double>(stats.maxmemory)) : "no limit",
            stats.maxmemory_policy, stats.evicted_keys);
        return 0;
      };
    });

const RegisterCommand ls_command("cache ls", "List cached entries: key, dtype, shape, size, created",
                                 [](CLI::App& app) {
                                   auto args = std::make_shared<ServerArgs>();
                                   auto prefix = std::make_shared<std::string>();
                                   add_server_options(app, *args);
                                   app.add_option("--prefix", *prefix, "only keys starting with this");
                                   return [args, prefix] {
                                     EmbeddingCache cache = open_cache(*args);
                                     for (const CacheEntry& entry : cache.list(*prefix)) {
                                       if (entry.manifest && entry.problem.empty()) {
                                         std::cout << fmt::format("{}  {}  created {}\n", entry.key,
                                                                  describe_entry(*entry.manifest),
                                                                  utc_time(entry.manifest->created_unix_ms));
                                       } else {
                                         std::cout
                                             << fmt::format("{}  BROKEN: {}\n", entry.key, entry.problem);
                                       }
                                     }
                                     return 0;
                                   };
                                 });

const RegisterCommand verify_command(
    "cache verify", "Re-read every entry and check chunks and checksums; exit 1 if broken entries remain",
    [](CLI::App& app) {
      auto args = std::make_shared<ServerArgs>();
      auto prefix = std::make_shared<std::string>();
      auto remove = std::make_shared<bool>(false);
      add_server_options(app, *args);
      app.add_option("--prefix", *prefix, "only keys starting with this");
      app.add_flag("--delete", *remove, "delete the broken entries");
      return [args, prefix, remove] {
        EmbeddingCache cache = open_cache(*args);
        size_t checked = 0, broken = 0;
        for (const CacheEntry& entry : cache.list(*prefix)) {
          std::string problem = cache.verify(entry.key, *remove);
          if (problem == "no such entry") continue;  // deleted or evicted since the listing
          ++checked;
          if (problem.empty()) continue;
          ++broken;
          std::cout << fmt::format("BROKEN {}: {}{}\n", entry.key, problem, *remove ? " (deleted)" : "");
        }
        std::cout << fmt::format(
            "verified {} entries: {} good, {} broken{}\n", checked, checked - broken, broken,
            broken > 0 ? (*remove ? ", deleted" : "; run with --delete to remove them") : "");
        return broken > 0 && !*remove ? 1 : 0;
      };
    });

const RegisterCommand rm_command(
    "cache rm", "Delete one entry (and chunks of its unfinished puts)", [](CLI::App& app) {
      auto args = std::make_shared<ServerArgs>();
      auto key = std::make_shared<std::string>();
      add_server_options(app, *args);
      app.add_option("--key", *key, "the entry's key")->required();
      return [args, key] {
        EmbeddingCache cache = open_cache(*args);
        if (!cache.remove(*key))
          throw InputError({"", 0, "--key", *key}, "no such entry in " + cache.endpoint().describe());
        std::cout << "removed " << *key << "\n";
        return 0;
      };
    });

struct PutArgs {
  ServerArgs server;
  std::string key, file, tensor;
};

const RegisterCommand put_command(
    "cache put", "Store a tensor of a safetensors file (the first, or --tensor NAME) under a key",
    [](CLI::App& app) {
      auto args = std::make_shared<PutArgs>();
      add_server_options(app, args->server);
      app.add_option("--key", args->key, "the entry's key")->required();
      app.add_option("FILE", args->file, "a .safetensors file")->required()->check(CLI::ExistingFile);
      app.add_option("--tensor", args->tensor, "the tensor to store (default: the first in the file)");
      return [args] {
        EmbeddingCache::check_key(args->key);
        auto file = safetensors::File::open(args->file);
        if (file->tensors().empty()) throw InputError({args->file, 0, "", ""}, "the file holds no tensor");
        std::string name = args->tensor.empty() ? file->tensors().front().name : args->tensor;
        at::Tensor tensor = file->get(name);  // an InputError naming file and tensor when absent
        EmbeddingMetadata metadata;
        metadata.extra = file->metadata();
        metadata.extra["tensor"] = name;
        EmbeddingCache cache = open_cache(args->server);
        PutResult result = cache.put(args->key, tensor, metadata);
        std::cout << fmt::format(
            "{} {}: {} from {}\n",
            result == PutResult::Stored ? "stored" : "already present, left as it is:", args->key,
            fmt::format("{} {}", manifest_dtype_name(tensor.scalar_type()), tensor.sizes()), args->file);
        return 0;
      };
    });

// Streams an entry into a safetensors file: chunks go to FILE.tmp.<pid> as they arrive (memory
// stays at one window of chunks however large the entry), renamed to FILE once the checksum matched.
class SafetensorsSink : public PayloadSink {
 public:
  SafetensorsSink(std::string path, std::string key) : path_(std::move(path)), key_(std::move(key)) {}

  void begin(const CacheManifest& m) override {
    safetensors::Metadata metadata = m.metadata.extra;
    name_ = metadata.count("tensor") != 0 ? metadata["tensor"] : std::string("embedding");
    metadata.erase("tensor");
    metadata["cache_key"] = key_;
    metadata["encoder_fingerprint"] = m.metadata.encoder_fingerprint;
    metadata["grid_thw"] = nlohmann::json(m.metadata.grid_thw).dump();
    metadata["frame_timestamps"] = nlohmann::json(m.metadata.frame_timestamps).dump();
    metadata["created"] = utc_time(m.created_unix_ms);
    writer_.reset();  // an earlier attempt's temporary file goes first
    writer_.emplace(path_, name_, m.dtype, m.shape, metadata);
  }
  void write(const char* data, size_t size) override { writer_->write(data, size); }
  void commit() { writer_->commit(); }
  const std::string& name() const { return name_; }

 private:
  std::string path_, key_, name_;
  std::optional<safetensors::StreamWriter> writer_;
};

const RegisterCommand get_command(
    "cache get", "Write an entry's tensor to a safetensors file", [](CLI::App& app) {
      auto args = std::make_shared<PutArgs>();
      add_server_options(app, args->server);
      app.add_option("--key", args->key, "the entry's key")->required();
      app.add_option("--out", args->file, "the .safetensors file to write")->required();
      return [args] {
        EmbeddingCache cache = open_cache(args->server);
        SafetensorsSink sink(args->file, args->key);
        std::optional<CacheManifest> hit = cache.read_into(args->key, sink);
        if (!hit) {
          throw InputError(
              {"", 0, "--key", args->key},
              fmt::format("not in the cache at {} (absent, or found broken and deleted: see the log)",
                          cache.endpoint().describe()));
        }
        sink.commit();
        std::cout << fmt::format("wrote {}: {} \"{}\"\n", args->file, describe_entry(*hit), sink.name());
        return 0;
      };
    });

}  // namespace
}  // namespace lvrl::cache
