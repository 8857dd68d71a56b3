// bench_cache_throughput: EmbeddingCache put/get throughput (GB/s) of 64 MB and 1 GB tensors, over a
// unix socket and over TCP on 127.0.0.1, against the anchor `redis-benchmark` SET/GET of one
// chunk-sized value, measured in the same run against the same private server (allkeys-lru, no
// persistence: the cache server's config). The anchor is the best of 1 and 4 clients, no
// pipelining (on this 2-core machine pipelining 4 MB SETs only slows redis-benchmark down), run
// against the server in the state each put meets: empty (SET of new keys: fresh pages), full and
// evicting (SET of new keys right after the same filling as a full-cache put); SET overwriting one key
// is reported as the strictest reading.
//
// Ours includes everything a user pays: chunking, the xxh3 checksum, the PERSIST check and the
// manifest commit on put; the manifest read, the checks and the checksum on get. Gets are timed
// twice: "cold" into fresh memory (page faults included), and warm into the previous result's
// freed buffer (read_buffers.h), the steady state of a trainer; the target compares the warm one.
// Every get is compared byte for byte with what was put: a mismatch exits 1. Missing the target
// (ours >= 0.8 x the anchor) prints MISSED, and exits 0.
//
//   bench_cache_throughput [--quick] [--repeat R] [--chunk-bytes B] [--pipeline-bytes B]
//   [--pipeline-reply-bytes B]
// --quick: 64 MB only, at most 2 repetitions. Times are the best of R runs (default 3), the anchor
// and ours alternating so that load from other processes on this shared machine hits both alike.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "cache/embedding_cache.h"
#include "cache/read_buffers.h"
#include "cache/redis_server.h"
#include "core/clock.h"
#include "core/temp_dir.h"

namespace fs = std::filesystem;
using lvrl::cache::EmbeddingCache;
using lvrl::cache::RedisEndpoint;

namespace {
using Clock = std::chrono::steady_clock;
constexpr double kTarget = 0.8;
constexpr const char* kNewKeys = "-r 1000000000";  // redis-benchmark: a new random key per request

using lvrl::seconds_since;

int free_tcp_port() {  // bound to port 0, the OS picks; closed again for redis-server to take
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

struct Anchor {
  double set_gbps = 0;        // SET of one key, overwritten: the server reuses the old value's memory
  double fresh_set_gbps = 0;  // SET of new keys (-r) into an empty server: it takes fresh pages
  double full_set_gbps = 0;   // SET of new keys (-r) into a full cache: it evicts to make room
  double get_gbps = 0;
};

// GB/s of `test` ("SET", "GET") in redis-benchmark runs of `requests` requests, best of `clients`:
// --csv prints "SET","<requests/s>",...; GB/s = requests/s × value size. `extra`: more options (-r for
// new keys).
double redis_benchmark_gbps(const RedisEndpoint& endpoint, const std::string& test, size_t value_bytes,
                            const std::string& extra, int64_t requests = 150,
                            const std::vector<int>& clients = {1, 4}) {
  const std::string target = endpoint.transport == RedisEndpoint::Transport::Unix
                                 ? "-s " + endpoint.socket_path
                                 : fmt::format("-h {} -p {}", endpoint.host, endpoint.port);
  double best = 0;
  std::string lower = test;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  for (int c : clients) {
    std::string command =
        fmt::format("redis-benchmark {} -a {} -t {} -d {} -n {} -c {} -P 1 {} --csv 2>/dev/null", target,
                    endpoint.password, lower, value_bytes, requests, c, extra);
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) throw std::runtime_error("cannot run redis-benchmark");
    char line[512];
    const std::string prefix = "\"" + test + "\",\"%lf\"";
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      double rps = 0;
      if (std::sscanf(line, prefix.c_str(), &rps) == 1)
        best = std::max(best, rps * static_cast<double>(value_bytes) / 1e9);
    }
    if (::pclose(pipe) != 0) throw std::runtime_error("redis-benchmark failed: " + command);
  }
  return best;
}

// The anchors an empty server gives (SET overwriting one key, GET of it, SET of new keys); leaves it empty.
Anchor run_redis_benchmark(const RedisEndpoint& endpoint, size_t value_bytes) {
  Anchor anchor;
  lvrl::cache::RedisClient client(endpoint);
  auto flush = [&] { client.run(lvrl::cache::RedisCommand{"FLUSHALL"}, lvrl::cache::Retry::Idempotent); };
  anchor.set_gbps = redis_benchmark_gbps(endpoint, "SET", value_bytes, "");
  anchor.get_gbps = redis_benchmark_gbps(endpoint, "GET", value_bytes, "");
  flush();
  anchor.fresh_set_gbps = redis_benchmark_gbps(endpoint, "SET", value_bytes, kNewKeys);
  flush();
  return anchor;
}

struct Measured {
  std::string transport;
  int64_t bytes = 0;
  double put_gbps = 0;       // into a server that must take fresh pages: as SET new
  double full_put_gbps = 0;  // into a full cache that evicts to make room, as SET new into it
  double get_gbps = 0, cold_get_gbps = 0;
  double put_faults_per_mb = 0, full_put_faults_per_mb = 0;  // the server's, in the fastest run
  // Diagnostic anchor: one connection's SETs of new keys, as many as the tensor has chunks, into the full
  // cache right after the filler, as a full-cache put (a burst the size of one put, not a 150-request
  // stream).
  double burst_set_gbps = 0;
};

// The server's minor page faults so far (/proc/<pid>/stat field 10, all its threads): one per 4 KB
// page it touches for the first time, which is what a put into fresh memory costs it.
int64_t minor_faults(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // the name may hold spaces
  std::string field;
  for (int i = 3; i < 10; ++i) fields >> field;  // state .. flags
  int64_t faults = 0;
  fields >> faults;
  return faults;
}

int64_t evicted_keys(lvrl::cache::RedisClient& admin) {
  const std::string info =
      admin.run(lvrl::cache::RedisCommand{"INFO", "stats"}, lvrl::cache::Retry::Idempotent).str();
  const size_t at = info.find("\nevicted_keys:");
  if (at == std::string::npos) throw std::runtime_error("INFO stats has no evicted_keys");
  return std::stoll(info.substr(at + 14));
}

// The filler: chunk-sized random (incompressible) values, serialized once by DUMP, so that RESTORE ...
// IDLETIME can write them already old in Redis' LRU (idle an hour): eviction takes filler before
// anything a put writes.
struct Filler {
  RedisEndpoint endpoint;
  std::string dumped;  // DUMP of a chunk-sized value
  int64_t next = 0;    // the next filler key's number
};

Filler make_filler(const RedisEndpoint& endpoint, size_t chunk_bytes) {
  using lvrl::cache::RedisCommand;
  using lvrl::cache::Retry;
  const at::Tensor random =
      at::randint(0, 256, {static_cast<int64_t>(chunk_bytes)}, at::TensorOptions().dtype(at::kByte));
  lvrl::cache::RedisClient client(endpoint);
  client.run(RedisCommand{"SET", "bench:filler:template"}.add_view(
                 static_cast<const char*>(random.data_ptr()), chunk_bytes),
             Retry::Idempotent);
  Filler filler{endpoint, client.run(RedisCommand{"DUMP", "bench:filler:template"}, Retry::Idempotent).str()};
  client.run(RedisCommand{"DEL", "bench:filler:template"}, Retry::Idempotent);
  return filler;
}

// Writes filler until the server evicts: a cache in use, where the chunks of each put land in memory
// that evicting older entries frees. The filler's own connection closes when it is done, as a writer
// that has finished: Redis keeps a read buffer sized for the next large argument on a connection that
// sent one, and closing hands it back, so the first chunk of a put (or of the anchor) lands in reused
// memory too. (With none free, every put's first chunk took ~1025 fresh pages, 3–8 ms of the server's
// time; now 0.) No pause follows: a put (and the anchor) starts right after this stream of writes. (A pause
// of a second or more to age the filler instead left both processes on one of this machine's two CPUs for a
// whole 64 MB put: ~10 of its 28 ms waiting in the run queue, /proc/<pid>/schedstat, against none right after
// a stream of writes.)
void fill_until_evicting(Filler& filler, int64_t maxmemory) {
  lvrl::cache::RedisClient client(filler.endpoint);
  const int64_t before = evicted_keys(client);
  const int64_t most = 2 * maxmemory / static_cast<int64_t>(filler.dumped.size()) + 64;
  for (int64_t written = 0; evicted_keys(client) == before; written += 8) {
    if (written > most) throw std::runtime_error("the server does not evict: is maxmemory set?");
    std::vector<lvrl::cache::RedisCommand> batch;
    for (int i = 0; i < 8; ++i) {
      batch.push_back(lvrl::cache::RedisCommand{"RESTORE"}
                          .add(fmt::format("bench:filler:{}", filler.next++))
                          .add(int64_t{0})
                          .add_view(filler.dumped.data(), filler.dumped.size())
                          .add("IDLETIME")
                          .add(int64_t{3600}));
    }
    client.pipeline(batch, lvrl::cache::Retry::Idempotent,
                    [&](size_t i, const lvrl::cache::RedisReply& reply) {
                      if (reply.is_error())
                        throw std::runtime_error(batch[i].describe() + ": " + reply.str());
                    });
  }
}

bool same(const std::optional<lvrl::cache::CachedEmbedding>& hit, const at::Tensor& tensor,
          const std::string& key) {
  bool correct = hit && hit->tensor.nbytes() == tensor.nbytes() &&
                 std::memcmp(hit->tensor.data_ptr(), tensor.data_ptr(), tensor.nbytes()) == 0;
  if (!correct) std::cerr << fmt::format("WRONG: {}: the get did not return what was put\n", key);
  return correct;
}

// One put into fresh server memory and two gets of `tensor`, each timed and compared byte for byte;
// keeps the best. MEMORY PURGE first hands the pages the server freed earlier back to the kernel, so
// the put's chunks land in fresh pages as every SET of SET new does. The first get lands in fresh
// memory (cold), the second in the first one's freed buffer (warm: what a trainer reading
// embeddings step after step sees, read_buffers.h).
bool measure_fresh(EmbeddingCache& cache, lvrl::cache::RedisClient& admin, pid_t server,
                   const at::Tensor& tensor, const std::string& key, Measured& best) {
  const auto bytes = static_cast<double>(tensor.nbytes());
  cache.remove(key);
  admin.run(lvrl::cache::RedisCommand{"MEMORY", "PURGE"}, lvrl::cache::Retry::Idempotent);
  const int64_t faults = minor_faults(server);
  Clock::time_point start = Clock::now();
  cache.put(key, tensor);
  const double put_seconds = seconds_since(start);
  const double faults_per_mb = static_cast<double>(minor_faults(server) - faults) / (bytes / 1e6);
  lvrl::cache::release_read_buffers();
  start = Clock::now();
  std::optional<lvrl::cache::CachedEmbedding> hit = cache.get(key);
  const double cold_seconds = seconds_since(start);
  bool correct = same(hit, tensor, key);
  hit.reset();
  start = Clock::now();
  hit = cache.get(key);
  const double warm_seconds = seconds_since(start);
  correct &= same(hit, tensor, key);
  hit.reset();
  cache.remove(key);
  if (bytes / put_seconds / 1e9 > best.put_gbps) {
    best.put_gbps = bytes / put_seconds / 1e9;
    best.put_faults_per_mb = faults_per_mb;
  }
  best.cold_get_gbps = std::max(best.cold_get_gbps, bytes / cold_seconds / 1e9);
  best.get_gbps = std::max(best.get_gbps, bytes / warm_seconds / 1e9);
  return correct;
}

// One put into a full cache (fill_until_evicting), timed; the server evicts filler to make room and
// reuses its memory, as SET (one key overwritten) reuses the old value's. Checked byte for byte with
// eviction off, so that the get's own reply buffers cannot evict what it reads. Eviction is LRU by
// sampling: should it take a chunk of this very put, the entry reads as a miss; that run is not
// counted (and said so), since the cache did its job.
bool measure_full(EmbeddingCache& cache, lvrl::cache::RedisClient& admin, pid_t server,
                  const at::Tensor& tensor, const std::string& key, Filler& filler, int64_t maxmemory,
                  Measured& best) {
  using lvrl::cache::RedisCommand;
  using lvrl::cache::Retry;
  const auto bytes = static_cast<double>(tensor.nbytes());
  cache.remove(key);
  fill_until_evicting(filler, maxmemory);
  const int64_t faults = minor_faults(server);
  const Clock::time_point start = Clock::now();
  cache.put(key, tensor);
  const double put_seconds = seconds_since(start);
  const double faults_per_mb = static_cast<double>(minor_faults(server) - faults) / (bytes / 1e6);
  admin.run(RedisCommand{"CONFIG", "SET", "maxmemory", "0"}, Retry::Idempotent);
  std::optional<lvrl::cache::CachedEmbedding> hit = cache.get(key);
  bool correct = true;
  if (hit) {
    correct = same(hit, tensor, key);
    if (correct && bytes / put_seconds / 1e9 > best.full_put_gbps) {
      best.full_put_gbps = bytes / put_seconds / 1e9;
      best.full_put_faults_per_mb = faults_per_mb;
    }
  } else {
    std::cerr << fmt::format(
        "note: {}: the full cache evicted a chunk of the entry being put; run not counted\n", key);
  }
  hit.reset();
  cache.remove(key);
  admin.run(RedisCommand{"CONFIG", "SET", "maxmemory"}.add(maxmemory), Retry::Idempotent);
  return correct;
}
}  // namespace

int main(int argc, char** argv) {
  bool quick = std::getenv("LVRL_BENCH_QUICK") != nullptr;
  int repeat = 3;
  size_t chunk_bytes = size_t{4} << 20;
  std::string results_path;
  lvrl::cache::RedisOptions redis_options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick")
      quick = true;
    else if (arg == "--repeat" && i + 1 < argc)
      repeat = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--chunk-bytes" && i + 1 < argc)
      chunk_bytes = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--pipeline-bytes" && i + 1 < argc)
      redis_options.pipeline_bytes = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--pipeline-reply-bytes" && i + 1 < argc)
      redis_options.pipeline_reply_bytes = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--results" && i + 1 < argc)
      results_path = argv[++i];
    else {
      std::cerr << "usage: bench_cache_throughput [--quick] [--repeat R] [--chunk-bytes B] [--pipeline-bytes "
                   "B] [--pipeline-reply-bytes B] "
                   "[--results FILE.md]\n";
      return 2;
    }
  }
  if (quick) repeat = std::min(repeat, 2);
  at::set_num_threads(1);
  const std::string load_before = lvrl::bench::first_line("/proc/loadavg");

  std::optional<lvrl::TempDir> work(std::in_place, "lvrl-bench-cache");  // removed when reset or on return
  const fs::path dir = work->path();
  bool correct = true;
  std::vector<Measured> results;
  std::vector<std::pair<std::string, Anchor>> anchors;
  const std::string maxmemory = "3gb";
  try {
    lvrl::cache::RedisServerOptions options;
    options.dir = dir.string();
    options.name = "bench";
    options.maxmemory = maxmemory;
    options.tcp_port = free_tcp_port();
    lvrl::cache::RedisServer server(options);
    lvrl::cache::RedisClient admin(server.endpoint());  // MEMORY PURGE, CONFIG SET, FLUSHALL
    const int64_t maxmemory_bytes = lvrl::cache::parse_memory_size(maxmemory, {"", 0, "maxmemory", ""});
    Filler filler = make_filler(server.endpoint(), chunk_bytes);

    std::vector<int64_t> sizes = {int64_t{64} << 20};
    if (!quick) sizes.push_back(int64_t{1} << 30);
    // Distinct 8-byte words, so a chunk put in the wrong place cannot compare equal.
    std::vector<at::Tensor> tensors;
    for (int64_t bytes : sizes)
      tensors.push_back(at::arange(bytes / 8, at::TensorOptions().dtype(at::kLong)));
    for (const auto& [transport, endpoint] : {std::pair{std::string("unix"), server.endpoint()},
                                              std::pair{std::string("tcp"), server.tcp_endpoint()}}) {
      lvrl::cache::EmbeddingCacheOptions cache_options;
      cache_options.ns = "bench";
      cache_options.chunk_bytes = chunk_bytes;
      EmbeddingCache cache(endpoint, cache_options, redis_options);
      Anchor anchor;
      std::vector<Measured> measured(sizes.size());
      // Anchor and ours alternate, so a load change on this shared machine hits both alike.
      for (int r = 0; r < repeat; ++r) {
        Anchor once = run_redis_benchmark(endpoint, chunk_bytes);  // leaves the server empty
        anchor.set_gbps = std::max(anchor.set_gbps, once.set_gbps);
        anchor.get_gbps = std::max(anchor.get_gbps, once.get_gbps);
        anchor.fresh_set_gbps = std::max(anchor.fresh_set_gbps, once.fresh_set_gbps);
        for (size_t i = 0; i < sizes.size(); ++i) {
          measured[i].transport = transport;
          measured[i].bytes = sizes[i];
          correct &= measure_fresh(cache, admin, server.pid(), tensors[i],
                                   fmt::format("bench-{}-{}", transport, sizes[i]), measured[i]);
        }
        // The server is empty here: fill it once, so that each full-cache put below, like the anchor,
        // meets a cache that has been full for a while and needs only a few more writes to evict.
        fill_until_evicting(filler, maxmemory_bytes);
        for (size_t i = 0; i < sizes.size(); ++i) {
          correct &= measure_full(cache, admin, server.pid(), tensors[i],
                                  fmt::format("bench-{}-{}", transport, sizes[i]), filler, maxmemory_bytes,
                                  measured[i]);
        }
        // SET of new keys into the same full cache: the server work of a full-cache put's chunks.
        fill_until_evicting(filler, maxmemory_bytes);
        anchor.full_set_gbps =
            std::max(anchor.full_set_gbps, redis_benchmark_gbps(endpoint, "SET", chunk_bytes, kNewKeys));
        for (size_t i = 0; i < sizes.size(); ++i) {  // the same, one put's worth
          fill_until_evicting(filler, maxmemory_bytes);
          const auto chunks = static_cast<int64_t>((sizes[i] + chunk_bytes - 1) / chunk_bytes);
          measured[i].burst_set_gbps =
              std::max(measured[i].burst_set_gbps,
                       redis_benchmark_gbps(endpoint, "SET", chunk_bytes, kNewKeys, chunks, {1}));
        }
        admin.run(lvrl::cache::RedisCommand{"FLUSHALL"},
                  lvrl::cache::Retry::Idempotent);  // the anchor's empty server
      }
      anchors.emplace_back(transport, anchor);
      results.insert(results.end(), measured.begin(), measured.end());
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  work.reset();
  const std::string load_after = lvrl::bench::first_line("/proc/loadavg");

  nlohmann::json report = {{"bench", "cache_throughput"},
                           {"chunk_bytes", chunk_bytes},
                           {"repeat", repeat},
                           {"load_before", load_before},
                           {"load_after", load_after}};
  std::cout << fmt::format(
      "chunk {} MiB, GB/s best of {} runs; anchors: redis-benchmark with {}-byte values, best "
      "of 1 and 4 clients; (x) = ours / anchor\n",
      chunk_bytes >> 20, repeat, chunk_bytes);
  std::cout
      << "  put: into an empty server (fresh pages, as SET new: -r, a new key each time); full: into a\n"
         "  full cache that evicts (as SET new into the same full cache); SET: one key overwritten (the\n"
         "  server reuses its memory and evicts nothing); faults: the server's page faults per MB put;\n"
         "  get: warm (buffer reused), cold (fresh memory)\n";
  // Like for like: each put against SET of new keys into a server in the same state (empty / full and
  // evicting). Against the overwriting SET (`cross`), which neither takes fresh pages nor evicts, as the
  // strictest reading.
  bool met = true, met_cross = true;
  std::string table =
      "| link | tensor | put (empty server) | SET new | put/SET new | put (full cache) | SET new (full) | "
      "full/SET new (full) | SET new (full), one put's worth | full/that | SET | put/SET, full/SET | server "
      "faults/MB: put, full | get warm | get cold | GET | warm/GET | cold/GET |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Measured& m : results) {
    const Anchor& anchor = std::find_if(anchors.begin(), anchors.end(), [&](const auto& a) {
                             return a.first == m.transport;
                           })->second;
    const double fresh_ratio = m.put_gbps / anchor.fresh_set_gbps,
                 full_ratio = m.full_put_gbps / anchor.full_set_gbps;
    const double cross_ratio = m.put_gbps / anchor.set_gbps,
                 full_cross_ratio = m.full_put_gbps / anchor.set_gbps;
    const double get_ratio = m.get_gbps / anchor.get_gbps, cold_ratio = m.cold_get_gbps / anchor.get_gbps;
    met &= fresh_ratio >= kTarget && full_ratio >= kTarget && get_ratio >= kTarget;
    met_cross &= cross_ratio >= kTarget && full_cross_ratio >= kTarget;
    std::cout << fmt::format(
        "{:<4} {:>5} MB  put {:.2f} | SET new {:.2f} ({:.2f}x) | full {:.2f} | SET new full {:.2f} "
        "({:.2f}x; one put's worth {:.2f}, {:.2f}x) | SET {:.2f} (put {:.2f}x, full {:.2f}x) | faults/MB "
        "{:.0f}, {:.0f}  ||  get {:.2f} "
        "({:.2f}x) | cold {:.2f} ({:.2f}x) | GET {:.2f}\n",
        m.transport, m.bytes >> 20, m.put_gbps, anchor.fresh_set_gbps, fresh_ratio, m.full_put_gbps,
        anchor.full_set_gbps, full_ratio, m.burst_set_gbps, m.full_put_gbps / m.burst_set_gbps,
        anchor.set_gbps, cross_ratio, full_cross_ratio, m.put_faults_per_mb, m.full_put_faults_per_mb,
        m.get_gbps, get_ratio, m.cold_get_gbps, cold_ratio, anchor.get_gbps);
    auto mark = [](double ratio) {
      return ratio >= kTarget ? fmt::format("{:.2f}", ratio) : fmt::format("**{:.2f}**", ratio);
    };
    table += fmt::format(
        "| {} | {} | {:.2f} | {:.2f} | {} | {:.2f} | {:.2f} | {} | {:.2f} | {:.2f} | {:.2f} | {}, {} | "
        "{:.0f}, {:.0f} | {:.2f} | {:.2f} | {:.2f} | {} | {:.2f} |\n",
        m.transport, m.bytes >= (int64_t{1} << 30) ? "1 GB" : fmt::format("{} MB", m.bytes >> 20), m.put_gbps,
        anchor.fresh_set_gbps, mark(fresh_ratio), m.full_put_gbps, anchor.full_set_gbps, mark(full_ratio),
        m.burst_set_gbps, m.full_put_gbps / m.burst_set_gbps, anchor.set_gbps, mark(cross_ratio),
        mark(full_cross_ratio), m.put_faults_per_mb, m.full_put_faults_per_mb, m.get_gbps, m.cold_get_gbps,
        anchor.get_gbps, mark(get_ratio), cold_ratio);
    report["results"].push_back({{"link", m.transport},
                                 {"bytes", m.bytes},
                                 {"put_gbps", m.put_gbps},
                                 {"full_cache_put_gbps", m.full_put_gbps},
                                 {"get_gbps", m.get_gbps},
                                 {"cold_get_gbps", m.cold_get_gbps},
                                 {"put_server_faults_per_mb", m.put_faults_per_mb},
                                 {"full_cache_put_server_faults_per_mb", m.full_put_faults_per_mb},
                                 {"anchor_set_gbps", anchor.set_gbps},
                                 {"anchor_new_key_set_gbps", anchor.fresh_set_gbps},
                                 {"anchor_full_cache_new_key_set_gbps", anchor.full_set_gbps},
                                 {"anchor_full_cache_one_put_burst_set_gbps", m.burst_set_gbps},
                                 {"anchor_get_gbps", anchor.get_gbps},
                                 {"put_ratio_new_keys", fresh_ratio},
                                 {"full_cache_put_ratio_new_keys", full_ratio},
                                 {"put_ratio", cross_ratio},
                                 {"full_cache_put_ratio", full_cross_ratio},
                                 {"get_ratio", get_ratio},
                                 {"cold_get_ratio", cold_ratio}});
  }
  std::cout << fmt::format(
      "target (>= {0} x, like for like: put vs SET new into an empty server, full-cache put vs SET "
      "new into the full cache, warm get vs GET): {1}; puts vs the overwriting SET: {2}\n",
      kTarget, met ? "met" : "MISSED", met_cross ? "met" : "MISSED");
  report["target_met"] = met;
  report["target_met_put_vs_set"] = met_cross;
  report["correct"] = correct;

  if (!results_path.empty()) {
    const unsigned cores = std::thread::hardware_concurrency();
    const double busiest = std::max(std::atof(load_before.c_str()), std::atof(load_after.c_str()));
    const std::string busy =
        busiest > cores
            ? fmt::format(" **Machine busy (load average {:.1f} on {} cores): figures are noisy.**", busiest,
                          cores)
            : "";
    std::string section = fmt::format(
        "## cache_throughput\n\n"
        "`build/bench/bench_cache_throughput{}{} --results bench/RESULTS.md`, {}, {}, {} cores; load average "
        "{} before, "
        "{} after (a shared machine: absolute figures swing by 2x between runs; anchor and ours alternate "
        "within "
        "the run so load hits both alike, and each figure is the best of {}).{} One private cache server "
        "(`allkeys-lru`, no persistence, maxmemory {}) on a unix socket and on TCP 127.0.0.1; {} MiB chunks, "
        "`redis.pipeline_bytes` {} MiB, `redis.pipeline_reply_bytes` {} MiB; every get compared byte for "
        "byte with what was put ({}).\n\n"
        "Anchors: `redis-benchmark -t set,get -d {} -n 150 -P 1`, best of `-c 1` and `-c 4`. \"SET\" "
        "overwrites "
        "one key: the server reuses the old value's memory and evicts nothing. \"SET new\" adds `-r "
        "1000000000`, "
        "a new key per request, as every chunk of a put is: into the empty server it takes fresh pages from "
        "the "
        "kernel; \"SET new (full)\" runs it against the full cache (filled with old values until it evicts, "
        "then at once), so the server evicts older values to make room for each; \"one put's worth\" (a "
        "diagnostic, not judged) runs only as many of those SETs as the tensor has chunks, on one "
        "connection, in "
        "the same state — a burst the size of one put rather than a 150-request stream. Ours, put: chunking, "
        "the xxh3 checksum, the "
        "PERSIST check and the manifest commit, measured twice — into an empty server after `MEMORY PURGE` "
        "(fresh pages, like for like with SET new), and into a full cache that evicts older entries to make "
        "room "
        "(the same filling first, then at once; like for like with SET new (full)). Get: the "
        "manifest read, checks and checksum; \"warm\" gets land in the previous result's freed buffer (the "
        "steady "
        "state of a trainer), \"cold\" ones in fresh memory. \"server faults/MB\": the server's minor page "
        "faults "
        "(`/proc/<pid>/stat`) during the put, per MB put.\n\n{}\n"
        "Target (>= {:.1f} x redis-benchmark, like for like: put into an empty server vs SET new, put into a "
        "full "
        "cache vs SET new (full), warm get vs GET): {}. Puts vs the overwriting SET (columns put/SET, "
        "full/SET): {}.\n",
        quick ? " --quick" : "", repeat != 3 ? fmt::format(" --repeat {}", repeat) : "",
        lvrl::bench::utc_now(), lvrl::bench::cpu_model(), cores, load_before, load_after, repeat, busy,
        maxmemory, chunk_bytes >> 20, redis_options.pipeline_bytes >> 20,
        redis_options.pipeline_reply_bytes >> 20, correct ? "all correct" : "WRONG results", chunk_bytes,
        table, kTarget, met ? "met" : "MISSED", met_cross ? "met" : "MISSED");
    lvrl::bench::replace_results_section(results_path, "## cache_throughput", section);
    std::cout << "wrote " << results_path << "\n";
  }
  std::cout << report.dump() << "\n";
  return correct ? 0 : 1;
}
