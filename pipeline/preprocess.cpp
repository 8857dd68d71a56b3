#include "pipeline/preprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/clock.h"
#include "core/dataset.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "pipeline/sharded_encoder.h"
#include "sp/mesh.h"

namespace lvrl::pipeline {
namespace {
using Clock = SteadyClock;
const char* const kProducer = "lvrl preprocess";  // the cache metadata's producer

const RegisterConfigSection preprocess_section(
    {"preprocess",
     "lvrl preprocess: which frames, at what size, how many threads",
     {
         ConfigKey::string("sampling", "fps",
                           "fps: `fps` frames per second within [min_frames, max_frames] "
                           "(qwen-vl-utils' default); frames: a fixed count over the whole video")
             .choices({"fps", "frames"}),
         ConfigKey::number("fps", video::kQwenDefaultFps, "sampling=fps: frames per second of video")
             .range(0.001, 1000),
         ConfigKey::integer("min_frames", video::kQwenFpsMinFrames,
                            "sampling=fps: at least this many (rounded up to even)")
             .range(2, 1e6),
         ConfigKey::integer("max_frames", video::kQwenFpsMaxFrames,
                            "sampling=fps: at most this many (rounded down to even)")
             .range(2, 1e6),
         ConfigKey::integer("frames", 16, "sampling=frames: this many (rounded to even)").range(2, 1e6),
         ConfigKey::integer("min_pixels", video::kQwenVideoMinPixels,
                            "smallest frame area, pixels (Qwen smart_resize)")
             .range(28 * 28, 1e10),
         ConfigKey::integer("max_pixels", video::kQwenVideoMaxPixels,
                            "largest frame area, pixels (Qwen smart_resize)")
             .range(28 * 28, 1e10),
         ConfigKey::integer("total_pixels", video::kQwenVideoTotalPixels,
                            "pixel budget of a whole clip: long videos get smaller frames")
             .range(28 * 28, 1e13),
         ConfigKey::integer("decode_threads", 2,
                            "videos decoded at once (one decoder thread each) while the "
                            "encoder runs")
             .range(1, 256),
         ConfigKey::integer("decode_ahead", 2,
                            "decoded videos waiting for the encoder, at most (bounds memory)")
             .range(1, 256),
         ConfigKey::integer("threads", 0,
                            "encoder threads (LibTorch intra-op) per rank; 0 = one per core, shared "
                            "among the ranks on this machine")
             .range(0, 4096),
     }});

// One distinct video of the dataset and the records that name it.
struct VideoJob {
  std::string path;
  std::vector<std::string> record_ids;
};

std::vector<VideoJob> read_jobs(const PreprocessOptions& options, int64_t& records) {
  if (options.dataset.empty()) throw InputError({"", 0, "data.path", ""}, "expected the dataset JSONL file");
  if (options.video_dir.empty()) {
    throw InputError({"", 0, "data.video_dir", ""},
                     "expected the directory the dataset's videos resolve under");
  }
  data::DatasetReader reader(options.dataset, options.video_dir);
  std::vector<VideoJob> jobs;
  std::unordered_map<std::string, size_t> by_path;
  records = 0;
  for (data::Sample sample;
       (options.max_records == 0 || records < options.max_records) && reader.next(sample);) {
    ++records;
    auto [it, fresh] = by_path.emplace(sample.video, jobs.size());
    if (fresh) jobs.push_back({sample.video, {}});
    jobs[it->second].record_ids.push_back(sample.id);
  }
  return jobs;
}

// What a decode worker hands the encoder for one video.
struct Prepared {
  size_t index = 0;
  bool ready = false;                           // video holds patches to encode
  VideoOutcome outcome = VideoOutcome::Failed;  // when not ready
  std::string reason;
  Hash128 video_hash;
  std::string key;
  PreparedVideo video;
  double prepare_s = 0;
  std::exception_ptr fatal;  // the cache server failed: the run stops
};

// `threads` workers run work(0..count-1) in index order of claiming; finished items queue for the
// consumer, at most `capacity` of them, so workers stall instead of piling up decoded videos.
class DecodeAhead {
 public:
  DecodeAhead(size_t count, int threads, size_t capacity, std::function<Prepared(size_t)> work)
      : count_(count), capacity_(capacity), work_(std::move(work)) {
    const size_t workers = std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), count);
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
  }
  ~DecodeAhead() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    space_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }
  DecodeAhead(const DecodeAhead&) = delete;
  DecodeAhead& operator=(const DecodeAhead&) = delete;

  // Blocks until a worker has finished one more item; call it exactly `count` times.
  Prepared next() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return !queue_.empty(); });
    Prepared item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    space_.notify_one();
    return item;
  }

 private:
  void run() {
    for (size_t index = next_++; index < count_; index = next_++) {
      Prepared item = work_(index);
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [this] { return stop_ || queue_.size() < capacity_; });
      if (stop_) return;
      queue_.push_back(std::move(item));
      lock.unlock();
      ready_.notify_one();
    }
  }

  const size_t count_, capacity_;
  const std::function<Prepared(size_t)> work_;
  std::atomic<size_t> next_{0};
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<Prepared> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: started once everything above exists
};

// An error's text without the leading "<path>: " (the summary names the video already).
std::string reason_for(const std::exception& e, const std::string& path) {
  std::string text = e.what();
  const std::string prefix = path + ": ";
  return text.compare(0, prefix.size(), prefix) == 0 ? text.substr(prefix.size()) : text;
}

// Runs on a decode worker: hash, cache check, sample, patchify. Per-video problems become the
// item's reason; a failing cache server propagates (the caller stores it as fatal).
void prepare_into(Prepared& item, const VideoJob& job, const VideoRecipe& recipe,
                  const std::string& fingerprint, cache::EmbeddingCache& cache) {
  std::error_code error;
  if (!std::filesystem::exists(job.path, error)) {
    item.reason = "no such file";
    return;
  }
  try {
    item.video_hash = hash_file(job.path);
  } catch (const InputError& e) {  // unreadable: this video's problem
    item.reason = reason_for(e, job.path);
    return;
  }
  item.key = video_embedding_key(item.video_hash, recipe, fingerprint);
  if (cache.contains(item.key)) {
    item.outcome = VideoOutcome::Skipped;
    item.reason = "already cached";
    return;
  }
  video::SampleOptions sample_options;
  sample_options.open.threads = 1;  // parallelism across videos instead
  try {
    item.video = prepare_video(job.path, recipe, sample_options);
  } catch (const Error& e) {  // a bad file (InputError) or FFmpeg's refusal of it (LibraryError)
    item.reason = reason_for(e, job.path);
    return;
  }
  warn_if_damaged(job.path, item.video, recipe);
  item.ready = true;
}

Prepared prepare(size_t index, const VideoJob& job, const VideoRecipe& recipe, const std::string& fingerprint,
                 cache::EmbeddingCache& cache) {
  Prepared item;
  item.index = index;
  const Clock::time_point start = Clock::now();
  try {
    prepare_into(item, job, recipe, fingerprint, cache);
  } catch (...) {
    item.fatal = std::current_exception();
  }
  item.prepare_s = seconds_since(start);
  return item;
}

}  // namespace

const char* outcome_name(VideoOutcome outcome) {
  switch (outcome) {
    case VideoOutcome::Cached:
      return "cached";
    case VideoOutcome::Skipped:
      return "skipped";
    default:
      return "failed";
  }
}

VideoRecipe video_recipe_from(const Config& config) {
  VideoRecipe recipe;
  recipe.selection = config.get<std::string>("preprocess.sampling") == "frames" ? FrameSelection::Count
                                                                                : FrameSelection::Fps;
  recipe.fps = config.get<double>("preprocess.fps");
  recipe.min_frames = config.get<int64_t>("preprocess.min_frames");
  recipe.max_frames = config.get<int64_t>("preprocess.max_frames");
  recipe.frames = config.get<int64_t>("preprocess.frames");
  recipe.min_pixels = config.get<int64_t>("preprocess.min_pixels");
  recipe.max_pixels = config.get<int64_t>("preprocess.max_pixels");
  recipe.total_pixels = config.get<int64_t>("preprocess.total_pixels");
  recipe.on_damage = video::on_damage_from(config);
  try {
    recipe.check();
  } catch (const InputError& e) {  // name where the offending value came from
    const bool config_key = e.key().rfind("preprocess.", 0) == 0 || e.key().rfind("video.", 0) == 0;
    throw InputError({config_key ? config.source_of(e.key()) : "", 0, e.key(), e.value()}, e.problem());
  }
  return recipe;
}

PreprocessOptions preprocess_options_from(const Config& config) {
  PreprocessOptions out;
  out.dataset = config.get<std::string>("data.path");
  out.video_dir = config.get<std::string>("data.video_dir");
  out.max_records = config.get<int64_t>("data.max_samples");
  if (out.dataset.empty()) {  // checked here, before a checkpoint is loaded for nothing
    throw InputError({config.source_of("data.path"), 0, "data.path", ""}, "expected the dataset JSONL file");
  }
  if (out.video_dir.empty()) {
    throw InputError({config.source_of("data.video_dir"), 0, "data.video_dir", ""},
                     "expected the directory the dataset's videos resolve under");
  }
  out.recipe = video_recipe_from(config);
  out.decode_threads = static_cast<int>(config.get<int64_t>("preprocess.decode_threads"));
  out.decode_ahead = static_cast<int>(config.get<int64_t>("preprocess.decode_ahead"));
  return out;
}

PreprocessSummary run_preprocess(const PreprocessOptions& options, VisionEncoder& encoder,
                                 cache::EmbeddingCache& cache, const sp::Mesh* mesh) {
  const Clock::time_point start = Clock::now();
  // First: from here on, however this function ends, the other ranks hear stop (its destructor).
  std::optional<ShardedEncoder> sharded;
  if (mesh != nullptr && mesh->world_size() > 1) sharded.emplace(encoder, *mesh);
  auto encode = [&](const video::PixelPatches& patches) {
    return sharded ? sharded->encode(patches) : encoder.encode(patches);
  };
  PreprocessSummary summary;
  summary.encoder_fingerprint = encoder.fingerprint();
  summary.ns = cache.options().ns;
  VideoRecipe recipe = options.recipe;
  recipe.vision = encoder.vision_params();
  recipe.check();
  const std::vector<VideoJob> jobs = read_jobs(options, summary.records);
  summary.videos = static_cast<int64_t>(jobs.size());
  summary.reports.resize(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    summary.reports[i].video = jobs[i].path;
    summary.reports[i].record_ids = jobs[i].record_ids;
  }
  LVRL_INFO(
      "preprocess: {} records name {} videos; encoder {} ({} on {}, {} rank{}), cache {} namespace '{}'",
      summary.records, jobs.size(), encoder.fingerprint(), c10::toString(encoder.dtype()),
      encoder.device().str(), mesh != nullptr ? mesh->world_size() : 1,
      mesh != nullptr && mesh->world_size() > 1 ? "s" : "", cache.endpoint().describe(), cache.options().ns);

  Progress progress("preprocess", summary.videos, "video", options.progress);
  DecodeAhead ahead(
      jobs.size(), options.decode_threads, static_cast<size_t>(options.decode_ahead),
      [&](size_t index) { return prepare(index, jobs[index], recipe, encoder.fingerprint(), cache); });
  std::unordered_map<std::string, size_t> done_keys;  // key → the video of this run that holds it
  for (size_t n = 0; n < jobs.size(); ++n) {
    Prepared item = ahead.next();
    if (item.fatal) std::rethrow_exception(item.fatal);
    VideoReport& report = summary.reports[item.index];
    report.key = item.key;
    report.prepare_s = item.prepare_s;
    report.outcome = item.outcome;
    report.reason = item.reason;
    if (item.ready) {
      auto same = done_keys.find(item.key);
      if (same != done_keys.end()) {
        report.outcome = VideoOutcome::Skipped;
        report.reason = "same bytes as " + jobs[same->second].path;
      } else {
        Clock::time_point step = Clock::now();
        at::Tensor embeddings;
        // This video's failure: the tower's own check or the ranks' agreement that it failed
        // (Error), or LibTorch's refusal (c10::Error, e.g. CUDA out of memory on a long video).
        // No memory on the host or a bug goes up.
        std::exception_ptr failure;
        std::string why;
        try {
          embeddings = encode(item.video.patches);
        } catch (const Error& e) {
          failure = std::current_exception();
          why = e.what();
        } catch (const c10::Error& e) {
          failure = std::current_exception();
          why = e.what();
        }
        if (failure) {
          // Not this video's fault when the ranks are out of step: the run cannot go on.
          if (sharded && sharded->out_of_step()) std::rethrow_exception(failure);
          report.outcome = VideoOutcome::Failed;
          report.reason = "the encoder failed: " + why;
        }
        report.encode_s = seconds_since(step);
        if (embeddings.defined()) {
          step = Clock::now();
          cache.put(item.key, embeddings,
                    video_entry_metadata(kProducer, jobs[item.index].path, item.video_hash, item.video,
                                         recipe, encoder.fingerprint()));
          report.put_s = seconds_since(step);
          report.outcome = VideoOutcome::Cached;
          report.reason.clear();
          report.tokens = embeddings.size(0);
        }
      }
    }
    if (report.outcome != VideoOutcome::Failed) done_keys.emplace(report.key, item.index);
    if (report.outcome == VideoOutcome::Failed)
      LVRL_WARN("preprocess: skipping {}: {}", report.video, report.reason);
    progress.advance();
  }
  if (sharded) sharded->stop();
  progress.finish();

  for (const VideoReport& report : summary.reports) {
    summary.cached += report.outcome == VideoOutcome::Cached;
    summary.skipped += report.outcome == VideoOutcome::Skipped;
    summary.failed += report.outcome == VideoOutcome::Failed;
    summary.tokens += report.tokens;
    summary.prepare_s += report.prepare_s;
    summary.encode_s += report.encode_s;
    summary.put_s += report.put_s;
  }
  summary.seconds = seconds_since(start);
  return summary;
}

std::string PreprocessSummary::text() const {
  std::string out = fmt::format(
      "preprocess: {} records, {} videos in {:.1f} s ({:.2f} videos/s): {} cached, {} skipped (already "
      "cached), "
      "{} failed; {} tokens encoded\n",
      records, videos, seconds, seconds > 0 ? static_cast<double>(videos) / seconds : 0.0, cached, skipped,
      failed, tokens);
  for (const VideoReport& report : reports) {
    if (report.outcome != VideoOutcome::Failed) continue;
    out += fmt::format("  failed: {} (record{} {}): {}\n", report.video,
                       report.record_ids.size() == 1 ? "" : "s", fmt::join(report.record_ids, ", "),
                       report.reason);
  }
  return out;
}

nlohmann::json PreprocessSummary::to_json() const {
  nlohmann::json failures = nlohmann::json::array();
  for (const VideoReport& report : reports) {
    if (report.outcome != VideoOutcome::Failed) continue;
    failures.push_back({{"video", report.video}, {"records", report.record_ids}, {"reason", report.reason}});
  }
  return {{"command", "preprocess"},
          {"records", records},
          {"videos", videos},
          {"cached", cached},
          {"skipped", skipped},
          {"failed", failed},
          {"tokens", tokens},
          {"seconds", seconds},
          {"videos_per_s", seconds > 0 ? static_cast<double>(videos) / seconds : 0.0},
          {"prepare_s", prepare_s},
          {"encode_s", encode_s},
          {"put_s", put_s},
          {"encoder_fingerprint", encoder_fingerprint},
          {"namespace", ns},
          {"failures", failures}};
}

}  // namespace lvrl::pipeline
