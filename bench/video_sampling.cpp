// bench_video_sampling: lvrl's frame-exact sampler (video/sampling.h) against, in the same run, on
// the same files and the same target timestamps:
//   (a) PyAV seeking before every target and decoding forward (what most Python pipelines do);
//   (b) PyAV seeking only when the target's keyframe lies past the last decoded frame, after a
//       demux-only keyframe scan that counts in its time (the best a careful Python user gets);
//   (c) the floor: the frames that must be decoded (from each target's keyframe up to its frame,
//       continuing forward where targets share a GOP) divided by the full-decode rate of
//       `ffmpeg -threads T -i FILE -f null -` (T = the decoder threads lvrl uses).
// Also: Accuracy::Keyframe against exact mode, a 1-hour video at 1 fps (ours against (b)), and the
// batch path (sample_many, one decoder thread per video) against (b) run sequentially.
//
// Every answer is checked. A reference built here from a demux-only packet scan gives the right frame
// for each target (the last pts <= target); ours must match it and PyAV (a) for every target, and its
// pixels must match (a)'s within a tolerance; anchors are held to the same reference (a wrong anchor
// makes its time meaningless). Wrong frames exit 1; missed performance targets print MISSED only.
//
// Test videos are generated once with the ffmpeg CLI into the cache dir (untimed).
//
//   bench_video_sampling [--quick] [--cache DIR] [--repeat R] [--results bench/RESULTS.md] [--generate-only]
// --results rewrites that file's "## video_sampling" section (the rest is kept); --generate-only fills
// the cache and exits (the full size's 10-minute 720p file at preset medium takes minutes on 2 cores).
// Environment: LVRL_BENCH_QUICK=1, LVRL_BENCH_CACHE (default: cache/ beside this executable),
// LVRL_BENCH_REPEAT (default 1; each time is the min of R runs), LVRL_BENCH_PYTHON (/usr/bin/python3:
// Debian's python3-av; a pyenv python on PATH usually lacks it).
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "core/clock.h"
#include "video/av_check.h"
#include "video/sampling.h"

extern "C" {
#include <libavformat/avformat.h>
}

namespace fs = std::filesystem;
using json = nlohmann::json;
using lvrl::video::Accuracy;
using lvrl::video::OutputSize;
using lvrl::video::SampledFrames;
using lvrl::video::SampleOptions;
using lvrl::video::SamplingPlan;

namespace {
using Clock = std::chrono::steady_clock;
constexpr int kWidth = 448, kHeight = 252;  // output size; 32 × 18 blocks of 14 × 14 for the pixel check
constexpr double kPixelTolerance = 4.0;     // max mean |difference| of 14×14 block means, 0..255 levels

using lvrl::seconds_since;

struct Config {
  bool quick = false;
  int repeat = 1;
  fs::path cache;
  std::string python = "/usr/bin/python3";
  std::string pyav_script = LVRL_BENCH_PYAV_SCRIPT;
  std::string results;  // markdown file whose "## video_sampling" section gets this run's table
  bool generate_only = false;
  int decoder_threads = 1;
};

struct VideoSpec {
  std::string name;
  int width, height, fps, seconds;
  std::string preset;
  int hue = 0;  // degrees: batch videos differ in colour

  std::string file_name() const {
    return fmt::format("{}_{}x{}_{}fps_{}s_g250_bf3_{}{}.mp4", name, width, height, fps, seconds, preset,
                       hue != 0 ? fmt::format("_hue{}", hue) : "");
  }
};

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int run_shell(const std::string& command) {
  int status = std::system(command.c_str());
  return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

[[noreturn]] void fail_setup(const std::string& what) {
  std::cerr << "bench_video_sampling: " << what << "\n";
  std::exit(2);
}

// H.264 from testsrc2 (moving elements over a static pattern: real P- and B-frames), GOP 250, up to 3
// B-frames, MP4 with its index. Written to a temporary name, then renamed: a killed run leaves no
// half file behind to be reused.
fs::path ensure_video(const Config& config, const VideoSpec& spec) {
  fs::path path = config.cache / spec.file_name();
  if (fs::exists(path)) return path;
  fs::path partial = path;
  partial += ".partial.mp4";
  std::string source =
      fmt::format("testsrc2=size={}x{}:rate={}:duration={}", spec.width, spec.height, spec.fps, spec.seconds);
  if (spec.hue != 0) source += fmt::format(",hue=h={}", spec.hue);
  std::string command = fmt::format(
      "ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i {} -c:v libx264 -preset {} -g 250 -bf 3 "
      "-pix_fmt yuv420p -an {}",
      quote(source), spec.preset, quote(partial.string()));
  auto begin = Clock::now();
  if (run_shell(command) != 0) fail_setup("generating a test video failed: " + command);
  fs::rename(partial, path);
  fmt::print("generated {} in {:.1f} s (not measured)\n", path.string(), seconds_since(begin));
  std::fflush(stdout);
  return path;
}

// The reference: every packet of the video stream from a demux-only scan (independent of the sampler).
struct PacketIndex {
  AVRational time_base{1, 1};
  int64_t start = 0;             // the first frame's pts: timestamps are seconds from it
  std::vector<int64_t> pts;      // every frame, ascending (presentation order)
  std::vector<int64_t> key_pts;  // keyframes, ascending

  int64_t tick(double seconds_from_start) const {  // as the sampler rounds: down, forgiving float noise
    return start + static_cast<int64_t>(std::floor(seconds_from_start / av_q2d(time_base) + 1e-6));
  }
  int64_t tick_of_frame(double seconds_from_start) const {
    return start + std::llround(seconds_from_start / av_q2d(time_base));
  }
  size_t frame_for(int64_t tick) const {  // the last frame with pts <= tick, else the first
    auto after = std::upper_bound(pts.begin(), pts.end(), tick);
    return after == pts.begin() ? 0 : static_cast<size_t>(after - pts.begin() - 1);
  }
  size_t frame_index(int64_t frame_pts) const {
    return static_cast<size_t>(std::lower_bound(pts.begin(), pts.end(), frame_pts) - pts.begin());
  }
  int64_t keyframe_at_or_before(int64_t tick) const {
    auto after = std::upper_bound(key_pts.begin(), key_pts.end(), tick);
    return after == key_pts.begin() ? key_pts.front() : *(after - 1);
  }
};

PacketIndex scan_packets(const std::string& path) {
  AVFormatContext* format = nullptr;
  LVRL_AV_CHECK(avformat_open_input(&format, path.c_str(), nullptr, nullptr));
  std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> owner(
      format, [](AVFormatContext* f) { avformat_close_input(&f); });
  LVRL_AV_CHECK(avformat_find_stream_info(format, nullptr));
  int stream = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  LVRL_AV_CHECK(stream);
  PacketIndex index;
  index.time_base = format->streams[stream]->time_base;
  AVPacket* packet = av_packet_alloc();
  while (av_read_frame(format, packet) >= 0) {
    // Packets an edit list cuts (AV_PKT_FLAG_DISCARD) never become frames.
    if (packet->stream_index == stream && packet->pts != AV_NOPTS_VALUE &&
        !(packet->flags & AV_PKT_FLAG_DISCARD)) {
      index.pts.push_back(packet->pts);
      if (packet->flags & AV_PKT_FLAG_KEY) index.key_pts.push_back(packet->pts);
    }
    av_packet_unref(packet);
  }
  av_packet_free(&packet);
  std::sort(index.pts.begin(), index.pts.end());
  std::sort(index.key_pts.begin(), index.key_pts.end());
  if (index.pts.empty() || index.key_pts.empty()) fail_setup(path + ": no frames or no keyframe in the scan");
  index.start = index.pts.front();
  return index;
}

std::vector<int64_t> to_ticks(const PacketIndex& index, const std::vector<double>& targets) {
  std::vector<int64_t> ticks;
  for (double t : targets) ticks.push_back(index.tick(t));
  return ticks;
}

std::vector<int64_t> expected_pts(const PacketIndex& index, const std::vector<int64_t>& ticks) {
  std::vector<int64_t> out;
  for (int64_t tick : ticks) out.push_back(index.pts[index.frame_for(tick)]);
  return out;
}

// Frames a decoder must decode for these targets (visited in increasing order): from a target's
// keyframe up to its frame, or from the previous target's frame when the keyframe precedes it (same
// GOP: decode forward, no re-decode). Presentation-order counts.
int64_t floor_frames(const PacketIndex& index, std::vector<int64_t> ticks) {
  std::sort(ticks.begin(), ticks.end());
  int64_t count = 0, previous = -1;
  for (int64_t tick : ticks) {
    int64_t frame = static_cast<int64_t>(index.frame_for(tick));
    int64_t key = static_cast<int64_t>(index.frame_index(index.keyframe_at_or_before(index.pts[frame])));
    count += previous >= 0 && key <= previous ? std::max<int64_t>(frame - previous, 0) : frame - key + 1;
    previous = std::max(previous, frame);
  }
  return count;
}

double full_decode_seconds(const Config& config, const fs::path& path) {
  std::string command = fmt::format(
      "ffmpeg -hide_banner -loglevel error -nostdin -nostats -threads {} -i {} "
      "-map 0:v:0 -f null -",
      config.decoder_threads, quote(path.string()));
  double best = INFINITY;
  for (int r = 0; r < config.repeat; ++r) {
    auto begin = Clock::now();
    if (run_shell(command) != 0) fail_setup("full decode failed: " + command);
    best = std::min(best, seconds_since(begin));
  }
  return best;
}

struct PyavFile {
  fs::path path;
  std::vector<int64_t> ticks;
  fs::path thumbs;  // empty: no pixel summary wanted
};

// Runs the PyAV anchors on `files` (sequentially, timed together) for each mode.
json run_pyav(const Config& config, const std::vector<PyavFile>& files,
              const std::vector<std::string>& modes) {
  json job = {{"width", kWidth},
              {"height", kHeight},
              {"repeat", config.repeat},
              {"modes", modes},
              {"files", json::array()}};
  for (const PyavFile& file : files) {
    json entry = {{"path", file.path.string()}, {"target_ticks", file.ticks}};
    if (!file.thumbs.empty()) entry["thumbs"] = file.thumbs.string();
    job["files"].push_back(entry);
  }
  fs::path job_path = config.cache / "pyav_job.json", out_path = config.cache / "pyav_out.json";
  std::ofstream(job_path) << job.dump();
  fs::remove(out_path);
  // A hung anchor must not hang the benchmark: an hour is far beyond any run of the sizes.
  std::string command =
      fmt::format("timeout 3600 {} {} {} {}", quote(config.python), quote(config.pyav_script),
                  quote(job_path.string()), quote(out_path.string()));
  if (run_shell(command) != 0) fail_setup("the PyAV anchor failed: " + command);
  json out;
  std::ifstream(out_path) >> out;
  return out;
}

struct OursTimed {
  double seconds = INFINITY;
  SampledFrames result;
};

OursTimed time_ours(const Config& config, const fs::path& path, const SamplingPlan& plan,
                    const SampleOptions& options = {}) {
  OursTimed best;
  for (int r = 0; r < config.repeat; ++r) {
    auto begin = Clock::now();
    SampledFrames result =
        lvrl::video::sample_frames(path.string(), plan, OutputSize{kWidth, kHeight}, options);
    double took = seconds_since(begin);
    if (took < best.seconds) best = {took, std::move(result)};
  }
  return best;
}

std::vector<int64_t> ours_pts(const PacketIndex& index, const SampledFrames& sampled) {
  std::vector<int64_t> out;
  const double* seconds = sampled.timestamps.data_ptr<double>();
  for (int64_t i = 0; i < sampled.timestamps.numel(); ++i) out.push_back(index.tick_of_frame(seconds[i]));
  return out;
}

// Counts and reports the targets where `got` differs from `want`.
int64_t count_wrong(const std::string& who, const std::string& against, const PacketIndex& index,
                    const std::vector<int64_t>& ticks, const std::vector<int64_t>& want,
                    const std::vector<int64_t>& got) {
  if (got.size() != want.size()) {
    fmt::print("WRONG: {} returned {} frames for {} targets\n", who, got.size(), want.size());
    return static_cast<int64_t>(want.size());
  }
  int64_t wrong = 0;
  double tb = av_q2d(index.time_base);
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (++wrong <= 5) {
      fmt::print("WRONG: {} target {:.4f} s: frame at {:.4f} s, {} says {:.4f} s\n", who,
                 (ticks[i] - index.start) * tb, (got[i] - index.start) * tb, against,
                 (want[i] - index.start) * tb);
    }
  }
  if (wrong > 5) fmt::print("WRONG: {} ... {} targets in all\n", who, wrong);
  return wrong;
}

std::vector<int64_t> pyav_pts(const json& out, const std::string& mode, size_t file) {
  return out.at("modes").at(mode).at("pts").at(file).get<std::vector<int64_t>>();
}

// Largest per-frame mean |difference| between ours and PyAV's block means ([N, 18, 32] float32 file).
double pixel_difference(const SampledFrames& ours, const fs::path& thumbs) {
  std::ifstream in(thumbs, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  int64_t n = ours.frames.size(0);
  if (static_cast<int64_t>(bytes.size()) != n * 18 * 32 * static_cast<int64_t>(sizeof(float)))
    return INFINITY;
  at::Tensor pyav = at::empty({n, 18, 32}, at::kFloat);
  std::memcpy(pyav.data_ptr<float>(), bytes.data(), bytes.size());
  at::Tensor mine =
      ours.frames.to(at::kFloat).view({n, 18, kHeight / 18, 32, kWidth / 32, 3}).mean({2, 4, 5});
  return (mine - pyav).abs().mean({1, 2}).max().item<double>();
}

std::string verdict(bool met) {
  return met ? "met" : "MISSED";
}

Config parse(int argc, char** argv) {
  Config config;
  const char* env = std::getenv("LVRL_BENCH_QUICK");
  config.quick = env != nullptr && std::string(env) == "1";
  if ((env = std::getenv("LVRL_BENCH_REPEAT"))) config.repeat = std::max(1, std::atoi(env));
  if ((env = std::getenv("LVRL_BENCH_PYTHON"))) config.python = env;
  config.cache = (env = std::getenv("LVRL_BENCH_CACHE"))
                     ? fs::path(env)
                     : fs::read_symlink("/proc/self/exe").parent_path() / "cache";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail_setup(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--quick") {
      config.quick = true;
    } else if (arg == "--repeat") {
      config.repeat = std::max(1, std::stoi(value()));
    } else if (arg == "--cache") {
      config.cache = value();
    } else if (arg == "--results") {
      config.results = value();
    } else if (arg == "--generate-only") {
      config.generate_only = true;
    } else {
      fail_setup(
          "usage: bench_video_sampling [--quick] [--cache DIR] [--repeat R] [--results FILE.md] "
          "[--generate-only] "
          "(got '" +
          arg + "')");
    }
  }
  // The decoder threads lvrl picks by default (video/demuxer.cpp); the full-decode floor uses as many.
  config.decoder_threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 4);
  fs::create_directories(config.cache);
  return config;
}

int run(const Config& config) {
  av_log_set_level(AV_LOG_ERROR);
  const std::string load_before = lvrl::bench::first_line("/proc/loadavg");
  const std::string cpu = lvrl::bench::cpu_model();
  const unsigned cores = std::thread::hardware_concurrency();

  // Sizes: the issue's, or a smoke test under a minute once the cache is warm.
  const VideoSpec main_spec{"main", 1280, 720, 30, config.quick ? 60 : 600, "medium"};
  const std::vector<int64_t> sizes =
      config.quick ? std::vector<int64_t>{16, 64} : std::vector<int64_t>{64, 512};
  const int64_t keyframe_frames = sizes.front();
  const VideoSpec hour_spec{"hour", 320, 180, 15, config.quick ? 300 : 3600, "veryfast"};
  const int batch_videos = 16, batch_frames = 16;

  fmt::print("bench_video_sampling ({} mode): {} cores ({}), load {}, repeat {}, cache {}\n",
             config.quick ? "quick" : "full", cores, cpu, load_before, config.repeat, config.cache.string());
  fs::path main_path = ensure_video(config, main_spec);
  fs::path hour_path = ensure_video(config, hour_spec);
  std::vector<fs::path> batch_paths;
  for (int i = 0; i < batch_videos; ++i) {
    batch_paths.push_back(ensure_video(config, {"batch", 640, 360, 30, 10, "medium", (i + 1) * 20}));
  }
  if (config.generate_only) return 0;

  bool frames_ok = true;
  auto expect_right = [&](int64_t wrong) { frames_ok = frames_ok && wrong == 0; };
  std::string table, pyav_version = "?";
  json headline = {{"bench", "video_sampling"},
                   {"mode", config.quick ? "quick" : "full"},
                   {"cores", cores},
                   {"repeat", config.repeat}};
  json targets_met = json::object();

  // ---- The main file: ours against PyAV (a), (b) and the floor, at each size.
  PacketIndex main_index = scan_packets(main_path.string());
  lvrl::video::VideoInfo main_info = lvrl::video::probe(main_path.string());
  double decode_s = full_decode_seconds(config, main_path);
  double decode_fps = static_cast<double>(main_index.pts.size()) / decode_s;
  fmt::print(
      "\n{}: {}x{} {:.0f} s, {} frames, {} keyframes; full decode (ffmpeg -threads {}) {:.2f} s = {:.0f} "
      "frames/s\n",
      main_path.filename().string(), main_info.width, main_info.height, main_info.duration_s,
      main_index.pts.size(), main_index.key_pts.size(), config.decoder_threads, decode_s, decode_fps);
  table += fmt::format(
      "File: {}x{} {:.0f} s 30 fps H.264 (testsrc2, preset medium, GOP 250, 3 B-frames), {} frames; "
      "full decode `ffmpeg -threads {}` {:.2f} s ({:.0f} frames/s).\n\n",
      main_info.width, main_info.height, main_info.duration_s, main_index.pts.size(), config.decoder_threads,
      decode_s, decode_fps);
  table +=
      "| frames | ours s | (a) PyAV seek every s | (b) PyAV seek when needed s | (c) floor s | ours / floor "
      "| "
      "(a) / ours | (b) / ours | decoded: ours / floor / (b) / (a) | seeks ours / (b) |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  headline["main"] = json::array();
  double exact_seconds_for_keyframe_size = 0;
  for (int64_t frames : sizes) {
    SamplingPlan plan = SamplingPlan::uniform(frames);
    std::vector<double> targets = plan.targets(main_info.duration_s);
    std::vector<int64_t> ticks = to_ticks(main_index, targets);
    std::vector<int64_t> want = expected_pts(main_index, ticks);

    OursTimed ours = time_ours(config, main_path, plan);
    if (frames == keyframe_frames) exact_seconds_for_keyframe_size = ours.seconds;
    fs::path thumbs = config.cache / "pyav_thumbs.f32";
    json pyav = run_pyav(config, {{main_path, ticks, thumbs}}, {"seek_every", "seek_when_needed"});
    pyav_version = pyav["pyav_version"];
    const json& a = pyav["modes"]["seek_every"];
    const json& b = pyav["modes"]["seek_when_needed"];
    int64_t floor_count = floor_frames(main_index, ticks);
    double floor_s = floor_count / decode_fps;

    std::vector<int64_t> got = ours_pts(main_index, ours.result);
    std::vector<int64_t> got_a = pyav_pts(pyav, "seek_every", 0);
    expect_right(count_wrong("ours", "the packet index", main_index, ticks, want, got));
    expect_right(count_wrong("ours", "PyAV (a)", main_index, ticks, got_a, got));
    expect_right(count_wrong("PyAV (a)", "the packet index", main_index, ticks, want, got_a));
    expect_right(count_wrong("PyAV (b)", "the packet index", main_index, ticks, want,
                             pyav_pts(pyav, "seek_when_needed", 0)));
    if (ours.result.targets != targets) {
      fmt::print("WRONG: ours sampled other targets than uniform({}) of the probed duration\n", frames);
      frames_ok = false;
    }
    double pixels = pixel_difference(ours.result, thumbs);
    if (!(pixels <= kPixelTolerance)) {
      fmt::print(
          "WRONG: ours differs from PyAV (a) in pixels: mean |diff| {:.2f} levels on some frame (tolerance "
          "{})\n",
          pixels, kPixelTolerance);
      frames_ok = false;
    }

    double a_s = a["seconds"], b_s = b["seconds"];
    const auto& stats = ours.result.stats;
    fmt::print(
        "uniform {:4}: ours {:7.2f} s | (a) {:7.2f} s | (b) {:7.2f} s | floor {:7.2f} s | ours/floor {:.2f} "
        "| "
        "(a)/ours {:.2f} | (b)/ours {:.2f} | decoded ours {} floor {} (b) {} (a) {} | seeks ours {} (b) {} "
        "| pixel diff {:.2f}\n",
        frames, ours.seconds, a_s, b_s, floor_s, ours.seconds / floor_s, a_s / ours.seconds,
        b_s / ours.seconds, stats.frames_decoded, floor_count, b["decoded"].get<int64_t>(),
        a["decoded"].get<int64_t>(), stats.seeks, b["seeks"].get<int64_t>(), pixels);
    std::fflush(stdout);
    table += fmt::format(
        "| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {} / {} / {} / {} | {} / {} "
        "|\n",
        frames, ours.seconds, a_s, b_s, floor_s, ours.seconds / floor_s, a_s / ours.seconds,
        b_s / ours.seconds, stats.frames_decoded, floor_count, b["decoded"].get<int64_t>(),
        a["decoded"].get<int64_t>(), stats.seeks, b["seeks"].get<int64_t>());
    headline["main"].push_back({{"frames", frames},
                                {"ours_s", ours.seconds},
                                {"pyav_seek_every_s", a_s},
                                {"pyav_seek_when_needed_s", b_s},
                                {"floor_s", floor_s},
                                {"ours_over_floor", ours.seconds / floor_s},
                                {"a_over_ours", a_s / ours.seconds},
                                {"b_over_ours", b_s / ours.seconds},
                                {"ours_decoded", stats.frames_decoded},
                                {"floor_decoded", floor_count}});
    targets_met[fmt::format("ours_le_1.05x_floor_at_{}", frames)] = verdict(ours.seconds <= 1.05 * floor_s);
    targets_met[fmt::format("ge_1.15x_faster_than_b_at_{}", frames)] = verdict(b_s / ours.seconds >= 1.15);
    if (frames == sizes.back())
      targets_met[fmt::format("ge_4x_faster_than_a_at_{}", frames)] = verdict(a_s / ours.seconds >= 4);
  }

  // ---- Keyframe mode: the nearest keyframe at or before each target, far faster than exact.
  {
    SampleOptions options;
    options.accuracy = Accuracy::Keyframe;
    SamplingPlan plan = SamplingPlan::uniform(keyframe_frames);
    std::vector<int64_t> ticks = to_ticks(main_index, plan.targets(main_info.duration_s));
    OursTimed keyframes = time_ours(config, main_path, plan, options);
    std::vector<int64_t> want;
    for (int64_t tick : ticks) want.push_back(main_index.keyframe_at_or_before(tick));
    expect_right(count_wrong("ours (keyframe mode)", "the keyframe index", main_index, ticks, want,
                             ours_pts(main_index, keyframes.result)));
    double ratio = exact_seconds_for_keyframe_size / keyframes.seconds;
    fmt::print("keyframe mode, uniform {}: {:.3f} s, exact / keyframe {:.1f}x\n", keyframe_frames,
               keyframes.seconds, ratio);
    table += fmt::format(
        "\nKeyframe mode (`--accuracy keyframe`), uniform {}: {:.3f} s; exact mode {:.2f} s is {:.1f}× "
        "slower.\n",
        keyframe_frames, keyframes.seconds, exact_seconds_for_keyframe_size, ratio);
    headline["keyframe_mode"] = {
        {"frames", keyframe_frames}, {"seconds", keyframes.seconds}, {"exact_over_keyframe", ratio}};
    targets_met[fmt::format("keyframe_mode_le_one_fifth_of_exact_at_{}", keyframe_frames)] =
        verdict(ratio >= 5);
  }

  // ---- The hour-long video at 1 fps: ours against PyAV (b).
  {
    PacketIndex index = scan_packets(hour_path.string());
    lvrl::video::VideoInfo info = lvrl::video::probe(hour_path.string());
    SamplingPlan plan = SamplingPlan::at_fps(1);
    std::vector<int64_t> ticks = to_ticks(index, plan.targets(info.duration_s));
    std::vector<int64_t> want = expected_pts(index, ticks);
    OursTimed ours = time_ours(config, hour_path, plan);
    json pyav = run_pyav(config, {{hour_path, ticks, {}}}, {"seek_when_needed"});
    double b_s = pyav["modes"]["seek_when_needed"]["seconds"];
    expect_right(
        count_wrong("ours (hour)", "the packet index", index, ticks, want, ours_pts(index, ours.result)));
    expect_right(count_wrong("PyAV (b) (hour)", "the packet index", index, ticks, want,
                             pyav_pts(pyav, "seek_when_needed", 0)));
    const json& b = pyav["modes"]["seek_when_needed"];
    fmt::print(
        "hour file {}x{} {:.0f} s: {} frames at 1 fps: ours {:.2f} s | (b) {:.2f} s | (b)/ours {:.2f} | "
        "decoded ours {} (b) {} of {} | seeks ours {} (b) {}\n",
        info.width, info.height, info.duration_s, ticks.size(), ours.seconds, b_s, b_s / ours.seconds,
        ours.result.stats.frames_decoded, b["decoded"].get<int64_t>(), index.pts.size(),
        ours.result.stats.seeks, b["seeks"].get<int64_t>());
    table += fmt::format(
        "\nLong video: {}x{} {:.0f} s 15 fps (preset veryfast, GOP 250, 3 B-frames), {} frames at 1 fps: "
        "ours {:.2f} s, (b) PyAV seek when needed {:.2f} s, (b) / ours {:.2f}.\n",
        info.width, info.height, info.duration_s, ticks.size(), ours.seconds, b_s, b_s / ours.seconds);
    headline["long"] = {{"seconds_of_video", info.duration_s},
                        {"frames", ticks.size()},
                        {"ours_s", ours.seconds},
                        {"pyav_seek_when_needed_s", b_s},
                        {"b_over_ours", b_s / ours.seconds},
                        {"ours_decoded", ours.result.stats.frames_decoded},
                        {"video_frames", index.pts.size()}};
  }

  // ---- Batch: sample_many (one decoder thread per video, one video per core) against (b) in sequence.
  {
    std::vector<std::string> paths;
    std::vector<PacketIndex> indexes;
    std::vector<PyavFile> jobs;
    std::vector<std::vector<int64_t>> ticks;
    SamplingPlan plan = SamplingPlan::uniform(batch_frames);
    for (const fs::path& path : batch_paths) {
      paths.push_back(path.string());
      indexes.push_back(scan_packets(path.string()));
      ticks.push_back(to_ticks(indexes.back(), plan.targets(lvrl::video::probe(path.string()).duration_s)));
      jobs.push_back({path, ticks.back(), {}});
    }
    int parallel = static_cast<int>(cores);
    double ours_s = INFINITY;
    std::vector<lvrl::video::BatchResult> results;
    for (int r = 0; r < config.repeat; ++r) {
      auto begin = Clock::now();
      auto run = lvrl::video::sample_many(paths, plan, OutputSize{kWidth, kHeight}, parallel);
      double took = seconds_since(begin);
      if (took < ours_s) ours_s = took, results = std::move(run);
    }
    json pyav = run_pyav(config, jobs, {"seek_when_needed"});
    double b_s = pyav["modes"]["seek_when_needed"]["seconds"];
    for (size_t i = 0; i < paths.size(); ++i) {
      std::vector<int64_t> want = expected_pts(indexes[i], ticks[i]);
      if (!results[i].ok) {
        fmt::print("WRONG: ours failed on {}: {}\n", paths[i], results[i].error);
        frames_ok = false;
        continue;
      }
      expect_right(count_wrong("ours (batch)", "the packet index", indexes[i], ticks[i], want,
                               ours_pts(indexes[i], results[i].sampled)));
      expect_right(count_wrong("PyAV (b) (batch)", "the packet index", indexes[i], ticks[i], want,
                               pyav_pts(pyav, "seek_when_needed", i)));
    }
    double ours_rate = paths.size() / ours_s, b_rate = paths.size() / b_s;
    fmt::print(
        "batch {} videos 640x360 10 s, uniform {}: ours {:.2f} videos/s (parallel {}, 1 thread each) | (b) "
        "sequential {:.2f} videos/s | ratio {:.2f}\n",
        paths.size(), batch_frames, ours_rate, parallel, b_rate, ours_rate / b_rate);
    table += fmt::format(
        "\nBatch: {} videos 640x360 10 s 30 fps, uniform {} each: `sample_many` ({} in parallel, one "
        "decoder thread each) {:.2f} videos/s; (b) PyAV sequential (frame threading) {:.2f} videos/s; "
        "ratio {:.2f}.\n",
        paths.size(), batch_frames, parallel, ours_rate, b_rate, ours_rate / b_rate);
    headline["batch"] = {{"videos", paths.size()},
                         {"ours_videos_per_s", ours_rate},
                         {"pyav_videos_per_s", b_rate},
                         {"ratio", ours_rate / b_rate}};
  }

  const std::string load_after = lvrl::bench::first_line("/proc/loadavg");
  // Other work on the machine skews every time here (and favours PyAV's 3 auto threads over our 2).
  const double busiest = std::max(std::atof(load_before.c_str()), std::atof(load_after.c_str()));
  const std::string busy = busiest > 1.0 ? fmt::format(
                                               " **Machine busy (load average {:.1f} on {} cores): "
                                               "times are noisy.**",
                                               busiest, cores)
                                         : "";
  fmt::print("\nload average before {} / after {}{}\n", load_before, load_after, busy);
  std::string targets_text;
  for (auto& [name, state] : targets_met.items()) {
    fmt::print("target {}: {}\n", name, state.get<std::string>());
    targets_text += fmt::format("- {}: {}\n", name, state.get<std::string>());
  }
  fmt::print("frames: {}\n", frames_ok ? "all exact" : "WRONG (see above)");

  if (!config.results.empty()) {
    const std::string date = lvrl::bench::utc_now();
    std::string section = fmt::format(
        "## video_sampling\n\n"
        "**{} run** ({}), {}: {} cores, {}; load average before {} / after {}; repeat {} (min taken). "
        "PyAV {} (Debian python3-av) with frame threading (`thread_type = \"AUTO\"`). Every contender "
        "converts the chosen frames to RGB 448×252 (PyAV `reformat(interpolation=\"BICUBIC\")`; lvrl swscale "
        "bicubic). Frames: {}. "
        "Run: `build/bench/bench_video_sampling{} --results bench/RESULTS.md`.{}\n\n"
        "{}\n{}\n"
        "(c) counts every frame from a target's keyframe to it; lvrl skips non-reference frames no target "
        "needs (`skip_frame = AVDISCARD_NONREF`), so it can run below (c). The \"decoded\" column counts "
        "frames the decoder output.\n",
        config.quick ? "Quick (`--quick`, smoke-test sizes)" : "Full",
        config.quick ? "not the issue's figures" : "the issue's sizes", date, cores, cpu, load_before,
        load_after, config.repeat, pyav_version, frames_ok ? "all exact" : "WRONG",
        config.quick ? " --quick" : "", busy, table, targets_text);
    lvrl::bench::replace_results_section(config.results, "## video_sampling", section);
    fmt::print("wrote {}\n", config.results);
  }

  headline["frames_exact"] = frames_ok;
  headline["targets"] = targets_met;
  headline["load_before"] = load_before;
  headline["load_after"] = load_after;
  std::cout << headline.dump() << std::endl;
  return frames_ok ? 0 : 1;
}
}  // namespace

int main(int argc, char** argv) {
  Config config = parse(argc, argv);
  try {
    return run(config);
  } catch (const std::exception& e) {  // a sampler that throws on the benchmark's own files is wrong
    std::cout << "WRONG: " << e.what() << std::endl;
    return 1;
  }
}
