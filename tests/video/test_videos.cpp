// Test videos and the CLI reference: see test_videos.h for why it is built this way.
#include "tests/video/test_videos.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>

#include "tests/support/files.h"

namespace lvrl::testing_video {
namespace {

// Bump when the pattern or the meaning of a spec field changes: part of every cache key.
constexpr const char* kGeneratorVersion = "lvrl-test-video-3";

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

std::string hex(uint64_t value, int digits) {
  static const char* kDigits = "0123456789abcdef";
  std::string text(digits, '0');
  for (int i = digits - 1; i >= 0; --i, value >>= 4) text[i] = kDigits[value & 15];
  return text;
}

int checksum(int index) {
  return ((index & 15) + ((index >> 4) & 15) + ((index >> 8) & 15) + 5) & 15;
}

// geq luma expression: block b = column + kGrid·row (normalized, so any size works); blocks 0..11
// are the index bits, 12..15 the checksum bits. Dark 32 / light 224 leave headroom for range and
// matrix mistakes in either direction.
std::string pattern_expression() {
  std::ostringstream expr;
  expr << "st(0,floor(X*" << kGrid << "/W)+" << kGrid << "*floor(Y*" << kGrid << "/H));"
       << "st(1,mod(mod(N,16)+mod(floor(N/16),16)+mod(floor(N/256),16)+5,16));"
       << "32+192*if(lt(ld(0)," << kIndexBits << "),mod(floor(N/pow(2,ld(0))),2),"
       << "mod(floor(ld(1)/pow(2,ld(0)-" << kIndexBits << ")),2))";
  return expr.str();
}

std::vector<std::string> codec_args(const VideoSpec& spec) {
  const std::string gop = std::to_string(spec.gop);
  const std::string bframes = std::to_string(spec.bframes);
  if (spec.codec == "libx264") {
    // scenecut=0: every frame changes, scene-cut detection would add keyframes; b-adapt=0: fixed
    // B-frame runs, so B-frames really exist.
    std::string params = "scenecut=0:b-adapt=0";
    if (spec.open_gop) params += ":open-gop=1";
    return {"-c:v", "libx264", "-preset", "veryfast", "-g", gop, "-bf", bframes, "-x264-params", params};
  }
  if (spec.codec == "libx265") {
    std::string params = "log-level=error:keyint=" + gop + ":min-keyint=" + gop + ":bframes=" + bframes +
                         ":b-adapt=0:scenecut=0:open-gop=" + (spec.open_gop ? "1" : "0");
    std::vector<std::string> args = {"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", params};
    if (spec.container == "mp4" || spec.container == "mov") {
      args.insert(args.end(), {"-tag:v", "hvc1"});
    }
    return args;
  }
  if (spec.codec == "libvpx-vp9") {
    // Alt-ref frames (hidden, shipped in superframes) are the part of VP9 samplers get wrong.
    return {"-c:v", "libvpx-vp9",    "-deadline", "good",           "-cpu-used", "8",    "-g",
            gop,    "-auto-alt-ref", "1",         "-lag-in-frames", "16",        "-b:v", "400k"};
  }
  if (spec.codec == "libaom-av1") {
    return {"-c:v", "libaom-av1", "-cpu-used", "8", "-g", gop, "-b:v", "300k"};
  }
  if (spec.codec == "mpeg4") {
    return {"-c:v", "mpeg4", "-q:v", "3", "-g", gop, "-bf", bframes};
  }
  throw std::runtime_error("test_videos: unknown codec '" + spec.codec + "' in spec " + spec.name);
}

std::mutex cache_mutex;
std::map<std::string, std::string> made_videos;          // cache key → path
std::map<std::string, ReferenceFrames> reference_cache;  // path → frames

bool file_exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0;
}

std::string temporary_name(const std::string& path) {
  // Keep the extension last: ffmpeg picks the muxer from it.
  size_t dot = path.rfind('.');
  std::string suffix = ".tmp" + std::to_string(getpid());
  return dot == std::string::npos ? path + suffix : path.substr(0, dot) + suffix + path.substr(dot);
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  return parts;
}

// compact output line "section|k=v|k=v" → pairs (first occurrence wins for repeated keys).
std::map<std::string, std::string> compact_fields(const std::string& line) {
  std::map<std::string, std::string> fields;
  for (const std::string& part : split(line, '|')) {
    size_t eq = part.find('=');
    if (eq != std::string::npos) fields.emplace(part.substr(0, eq), part.substr(eq + 1));
  }
  return fields;
}

std::string ffprobe(const std::vector<std::string>& args, const std::string& path) {
  std::vector<std::string> argv = {"ffprobe", "-v", "error", "-select_streams", "v:0"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(path);
  test::ProcessResult run = run_tool(argv);
  if (run.exit_code != 0) {
    throw std::runtime_error("ffprobe failed (" + std::to_string(run.exit_code) +
                             "): " + test::join_command(argv) + "\n" + run.error_output);
  }
  return run.output;
}

}  // namespace

// ---- Running the CLIs -----------------------------------------------------------------------------

test::ProcessResult run_tool(const std::vector<std::string>& argv, double timeout_s) {
  test::ProcessOptions options;
  options.separate_stderr = true;
  options.timeout_s = timeout_s;
  return test::run_process(argv, options);
}

// ---- Generating -----------------------------------------------------------------------------------

double VideoSpec::fps() const {
  size_t slash = rate.find('/');
  if (slash == std::string::npos) return std::stod(rate);
  return std::stod(rate.substr(0, slash)) / std::stod(rate.substr(slash + 1));
}

std::string VideoSpec::describe() const {
  std::ostringstream text;
  text << name << " {" << codec << " ." << container << " " << width << "x" << height << " " << frames
       << " frames @" << rate << " gop " << gop << " bframes " << bframes << (open_gop ? " open-gop" : "")
       << " " << pix_fmt << " rotation " << rotation << (vfr ? " vfr" : "") << (faststart ? " faststart" : "")
       << "}";
  return text.str();
}

std::vector<std::vector<std::string>> make_commands(const VideoSpec& spec, const std::string& output) {
  if (spec.frames < 1 || spec.frames > kMaxFrames) {
    throw std::runtime_error("test_videos: frames must be in [1, 4096]: " + spec.describe());
  }
  if (spec.rotation != 0 && spec.container != "mp4" && spec.container != "mov") {
    throw std::runtime_error("test_videos: a rotation tag needs mp4 or mov: " + spec.describe());
  }
  const std::vector<std::string> ffmpeg = {"ffmpeg", "-nostdin", "-y", "-loglevel", "error"};
  std::vector<std::vector<std::string>> commands;
  // Encode at constant rate; later steps only rewrite timestamps and tags by stream copy, into
  // intermediate MP4s (exact timestamps, any of our codecs).
  const int steps = 1 + (spec.vfr ? 1 : 0) + (spec.rotation != 0 ? 1 : 0);
  auto step_output = [&](int step) {
    return step + 1 == steps ? output : output + ".step" + std::to_string(step) + ".mp4";
  };
  std::vector<std::string> encode = ffmpeg;
  encode.insert(encode.end(), {"-f", "lavfi", "-i",
                               "color=c=black:s=" + std::to_string(spec.width) + "x" +
                                   std::to_string(spec.height) + ":r=" + spec.rate,
                               "-frames:v", std::to_string(spec.frames), "-vf",
                               "geq=lum='" + pattern_expression() + "':cb=128:cr=128,format=" + spec.pix_fmt,
                               "-threads", "2"});
  std::vector<std::string> codec = codec_args(spec);
  encode.insert(encode.end(), codec.begin(), codec.end());
  if (spec.faststart && steps == 1) encode.insert(encode.end(), {"-movflags", "+faststart"});
  // bitexact: no random Matroska UIDs, dates or encoder tags, so the same spec gives the same bytes
  // (the damage tests overwrite fixed offsets).
  encode.insert(encode.end(), {"-fflags", "+bitexact", step_output(0)});
  commands.push_back(encode);
  int step = 1;
  if (spec.vfr) {
    // Frame n moves to slot n + 3·floor(n/7) (in frame periods): every 7th interval is 4 periods.
    // Done on packets, pts and dts alike (a monotonic map keeps dts <= pts and dts increasing): VFR
    // through the encoder (setpts + passthrough) makes libx264's B-frame dts collide, and the
    // muxers then rewrite pts (duplicate and 1-tick intervals). Only an MP4 → MP4 copy applies the
    // expression in the expected time base in 5.1; other containers are a plain remux after it.
    const std::string rate = "(" + spec.rate + ")";
    auto remap = [&](const std::string& ts) {
      return "st(0,round(" + ts + "*TB*" + rate + "));(ld(0)+3*floor(ld(0)/7))/(" + rate + "*TB)";
    };
    const bool last = step + 1 == steps;
    const std::string vfr_mp4 = !last                     ? step_output(step)
                                : spec.container == "mp4" ? output
                                                          : output + ".vfr.mp4";
    std::vector<std::string> retime = ffmpeg;
    retime.insert(retime.end(), {"-i", step_output(0), "-c", "copy", "-bsf:v",
                                 "setts=pts='" + remap("PTS") + "':dts='" + remap("DTS") + "'"});
    if (spec.faststart && vfr_mp4 == output) retime.insert(retime.end(), {"-movflags", "+faststart"});
    retime.insert(retime.end(), {"-fflags", "+bitexact", vfr_mp4});
    commands.push_back(retime);
    if (vfr_mp4 != step_output(step)) {
      std::vector<std::string> remux = ffmpeg;
      remux.insert(remux.end(), {"-i", vfr_mp4, "-c", "copy"});
      if (spec.faststart && step + 1 == steps) remux.insert(remux.end(), {"-movflags", "+faststart"});
      remux.insert(remux.end(), {"-fflags", "+bitexact", step_output(step)});
      commands.push_back(remux);
    }
    ++step;
  }
  if (spec.rotation != 0) {
    // FFmpeg 5.1 turns the `rotate` tag of a stream copy into a display matrix whose rotation
    // (av_display_rotation_get, counter-clockwise) equals the tag: `rotate=270` shows the picture
    // turned 90° clockwise (ffprobe prints rotation=-90, and the CLI's autorotate applies
    // transpose=clock). Checked by GeneratedVideo.EveryFrameShowsItsIndexAndTheSpecHolds.
    std::vector<std::string> tag = ffmpeg;
    tag.insert(tag.end(), {"-i", step_output(step - 1), "-c", "copy", "-metadata:s:v:0",
                           "rotate=" + std::to_string((360 - spec.rotation) % 360)});
    if (spec.faststart) tag.insert(tag.end(), {"-movflags", "+faststart"});
    tag.insert(tag.end(), {"-fflags", "+bitexact", step_output(step)});
    commands.push_back(tag);
  }
  return commands;
}

namespace {
VideoSpec spec_of(std::string name, std::string codec, std::string container, int frames, int gop,
                  int bframes) {
  VideoSpec spec;
  spec.name = std::move(name);
  spec.codec = std::move(codec);
  spec.container = std::move(container);
  spec.frames = frames;
  spec.gop = gop;
  spec.bframes = bframes;
  return spec;
}
}  // namespace

const std::vector<VideoSpec>& video_matrix() {
  static const std::vector<VideoSpec> matrix = [] {
    std::vector<VideoSpec> all;
    // H.264 with B-frames (runs of 3) and a long GOP: 300 frames, keyframes at 0 and 250 only.
    all.push_back(spec_of("h264_mp4_bframes_gop250", "libx264", "mp4", 300, 250, 3));
    // Open GOP: leading B-frames of each GOP reference the previous one; recovery-point keyframes.
    all.push_back(spec_of("h264_mkv_open_gop", "libx264", "mkv", 120, 30, 3));
    all.back().open_gop = true;
    all.push_back(spec_of("hevc_mp4_bframes", "libx265", "mp4", 120, 48, 3));
    all.push_back(spec_of("hevc10_mkv_bframes", "libx265", "mkv", 120, 48, 3));
    all.back().pix_fmt = "yuv420p10le";
    // VP9 with alt-ref (hidden) frames.
    all.push_back(spec_of("vp9_webm_altref", "libvpx-vp9", "webm", 120, 60, 0));
    all.push_back(spec_of("av1_mp4", "libaom-av1", "mp4", 90, 45, 0));
    // MPEG-4 part 2 with B-frames in AVI: no pts in the container, timestamps are guessed from dts.
    all.push_back(spec_of("mpeg4_avi_bframes", "mpeg4", "avi", 120, 30, 2));
    // MPEG-TS: timestamps start at 1.4 s, 90 kHz clock.
    all.push_back(spec_of("h264_ts_bframes", "libx264", "ts", 120, 30, 2));
    // MOV at NTSC 30000/1001: frame times are not whole milliseconds.
    all.push_back(spec_of("h264_mov_ntsc", "libx264", "mov", 90, 30, 2));
    all.back().rate = "30000/1001";
    // Variable frame rate: every 7th interval is 4 periods long.
    all.push_back(spec_of("h264_mkv_vfr", "libx264", "mkv", 120, 60, 2));
    all.back().vfr = true;
    all.push_back(spec_of("h264_mp4_vfr", "libx264", "mp4", 120, 60, 2));
    all.back().vfr = true;
    // Display rotation (phone video): shown turned 90° clockwise; and 270°.
    all.push_back(spec_of("h264_mp4_rotate90", "libx264", "mp4", 60, 30, 2));
    all.back().width = 192, all.back().height = 108, all.back().rotation = 90;
    all.push_back(spec_of("h264_mov_rotate270", "libx264", "mov", 45, 30, 2));
    all.back().rotation = 270;
    // Odd size: not a multiple of 16 (or of 28) either way.
    all.push_back(spec_of("h264_mp4_638x358", "libx264", "mp4", 60, 30, 3));
    all.back().width = 638, all.back().height = 358;
    return all;
  }();
  return matrix;
}

const VideoSpec& matrix_spec(const std::string& name) {
  for (const VideoSpec& spec : video_matrix()) {
    if (spec.name == name) return spec;
  }
  throw std::runtime_error("test_videos: no matrix spec named '" + name + "'");
}

std::string video_dir() {
  static const std::string dir = [] {
    const char* env = std::getenv("LVRL_TEST_VIDEO_DIR");
    std::string path = env && *env ? std::string(env)
                                   : ::testing::TempDir() + "lvrl-test-videos-" + std::to_string(getuid());
    if (path.back() == '/') path.pop_back();
    mkdir(path.c_str(), 0755);
    return path;
  }();
  return dir;
}

std::string make_video(const VideoSpec& spec) {
  // The key covers the exact commands (with a placeholder output), so a changed spec or generator
  // never reuses a stale file.
  std::string key = std::string(kGeneratorVersion) + "\n" + spec.name;
  for (const auto& command : make_commands(spec, "OUT." + spec.container))
    key += "\n" + test::join_command(command);
  const std::string path = video_dir() + "/" + spec.name + "-" + hex(fnv1a(key), 12) + "." + spec.container;
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (made_videos.count(key) || file_exists(path)) {
    made_videos[key] = path;
    return path;
  }
  const std::string partial = temporary_name(path);
  for (const auto& command : make_commands(spec, partial)) {
    test::ProcessResult run = run_tool(command);
    if (run.exit_code != 0) {
      throw std::runtime_error("generating test video " + spec.describe() + " failed:\n  " +
                               test::join_command(command) + "\n" + run.error_output);
    }
  }
  for (const char* leftover : {".step0.mp4", ".step1.mp4", ".vfr.mp4"})
    std::remove((partial + leftover).c_str());
  if (std::rename(partial.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("test_videos: cannot rename " + partial + " to " + path);
  }
  made_videos[key] = path;
  return path;
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = video_dir() + "/" + name;
  const std::string partial = temporary_name(path);
  test::write_file(partial, bytes);
  if (std::rename(partial.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("test_videos: cannot rename " + partial + " to " + path);
  }
  return path;
}

// ---- Reading the index back -----------------------------------------------------------------------

int decode_frame_index(const uint8_t* rgb, int width, int height, int rotation,
                       std::vector<int>* block_levels) {
  if (block_levels) block_levels->clear();
  if (width < kGrid || height < kGrid) return -1;
  rotation = ((rotation % 360) + 360) % 360;
  // Patch: a third of the block each way, centred, at least one pixel.
  const int half_x = std::max(0, width / kGrid / 6), half_y = std::max(0, height / kGrid / 6);
  int bits = 0;
  bool readable = true;
  for (int block = 0; block < kGrid * kGrid; ++block) {
    // Block centre on the coded picture, normalized to [0, 1).
    const double u = (block % kGrid + 0.5) / kGrid, v = (block / kGrid + 0.5) / kGrid;
    // Where that point is shown after turning the picture `rotation` degrees clockwise.
    double x = u, y = v;
    if (rotation == 90) {
      x = 1 - v, y = u;
    } else if (rotation == 180) {
      x = 1 - u, y = 1 - v;
    } else if (rotation == 270) {
      x = v, y = 1 - u;
    }
    const int cx = static_cast<int>(x * width), cy = static_cast<int>(y * height);
    int64_t sum = 0, count = 0;
    for (int py = std::max(0, cy - half_y); py <= std::min(height - 1, cy + half_y); ++py) {
      for (int px = std::max(0, cx - half_x); px <= std::min(width - 1, cx + half_x); ++px) {
        const uint8_t* pixel = rgb + (static_cast<int64_t>(py) * width + px) * 3;
        sum += pixel[0] + pixel[1] + pixel[2];
        count += 3;
      }
    }
    const int level = static_cast<int>(sum / count);
    if (block_levels) block_levels->push_back(level);
    if (level >= 168) {
      bits |= 1 << block;
    } else if (level > 88) {
      readable = false;  // mid-grey: not our pattern, or badly damaged
    }
  }
  const int index = bits & (kMaxFrames - 1);
  if (!readable || (bits >> kIndexBits) != checksum(index)) return -1;
  return index;
}

int frame_index(const at::Tensor& frames, int64_t i, int rotation) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == at::kByte,
              "frame_index: expected [N, H, W, 3] uint8, got ", frames.sizes(), " ", frames.scalar_type());
  at::Tensor frame = frames[i].contiguous();
  return decode_frame_index(frame.data_ptr<uint8_t>(), static_cast<int>(frame.size(1)),
                            static_cast<int>(frame.size(0)), rotation);
}

std::vector<int> cli_frame_indices(const std::string& path, int display_width, int display_height,
                                   int rotation, std::string* error) {
  std::vector<std::string> argv = {"ffmpeg", "-nostdin", "-loglevel", "error",     "-threads",
                                   "2",      "-i",       path,        "-fps_mode", "passthrough",
                                   "-f",     "rawvideo", "-pix_fmt",  "rgb24",     "-"};
  test::ProcessResult run = run_tool(argv);
  std::vector<int> indices;
  const size_t frame_bytes = static_cast<size_t>(display_width) * display_height * 3;
  if (error) {
    error->clear();
    if (run.exit_code != 0 || run.output.size() % frame_bytes != 0 || !run.error_output.empty()) {
      *error = test::join_command(argv) + ": exit " + std::to_string(run.exit_code) + ", " +
               std::to_string(run.output.size()) + " bytes (frame " + std::to_string(frame_bytes) + ")\n" +
               run.error_output;
    }
  }
  // Whatever whole frames came out, also from a damaged file where ffmpeg reports errors.
  for (size_t offset = 0; offset + frame_bytes <= run.output.size(); offset += frame_bytes) {
    indices.push_back(decode_frame_index(reinterpret_cast<const uint8_t*>(run.output.data() + offset),
                                         display_width, display_height, rotation));
  }
  return indices;
}

// ---- Reference timestamps (ffprobe) ---------------------------------------------------------------

const ReferenceFrames& reference_frames(const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto found = reference_cache.find(path);
    if (found != reference_cache.end()) return found->second;
  }
  const std::string text = ffprobe(
      {"-show_entries", "frame=key_frame,pts,pkt_dts,best_effort_timestamp,pict_type:stream=time_base", "-of",
       "compact"},
      path);
  ReferenceFrames frames;
  bool have_time_base = false;
  for (const std::string& line : split(text, '\n')) {
    if (line.rfind("stream|", 0) == 0) {
      auto fields = compact_fields(line);
      auto parts = split(fields["time_base"], '/');
      if (parts.size() == 2) {
        frames.time_base_num = std::stoll(parts[0]);
        frames.time_base_den = std::stoll(parts[1]);
        have_time_base = true;
      }
    } else if (line.rfind("frame|", 0) == 0) {
      auto fields = compact_fields(line);
      std::string ts = fields["best_effort_timestamp"];
      if (ts.empty() || ts == "N/A") ts = fields["pts"];
      if (ts.empty() || ts == "N/A") ts = fields["pkt_dts"];
      if (ts.empty() || ts == "N/A") {
        // MPEG-4 part 2 with B-frames in AVI: the last frame flushed from the decoder has no pts and
        // no dts at all. It is shown one interval after the previous frame.
        const size_t n = frames.ticks.size();
        if (n < 2)
          throw std::runtime_error("ffprobe: frame " + std::to_string(n) + " has no timestamp in " + path);
        frames.ticks.push_back(2 * frames.ticks[n - 1] - frames.ticks[n - 2]);
        ++frames.untimed;
      } else {
        frames.ticks.push_back(std::stoll(ts));
      }
      frames.key.push_back(fields["key_frame"] == "1");
      const std::string type = fields["pict_type"];
      frames.pict_type.push_back(type.size() == 1 ? type[0] : '?');
    }
  }
  if (!have_time_base || frames.ticks.empty())
    throw std::runtime_error("ffprobe: no video frames in " + path);
  const int64_t first = frames.ticks.front();
  for (int64_t tick : frames.ticks) {
    // Same arithmetic as tick × av_q2d(time_base) on the difference, done once in integers.
    frames.times.push_back(static_cast<double>(tick - first) * frames.time_base_num /
                           static_cast<double>(frames.time_base_den));
  }
  frames.start_s =
      static_cast<double>(first) * frames.time_base_num / static_cast<double>(frames.time_base_den);
  std::lock_guard<std::mutex> lock(cache_mutex);
  return reference_cache.emplace(path, std::move(frames)).first->second;
}

std::vector<double> frame_times(const std::string& path) {
  return reference_frames(path).times;
}

int64_t expected_frame(const std::vector<double>& times, double t) {
  int64_t found = 0;
  for (size_t i = 0; i < times.size(); ++i) {
    if (times[i] <= t + 1e-9) found = static_cast<int64_t>(i);
  }
  return found;
}

int64_t frame_at_time(const std::vector<double>& times, double t, double tolerance) {
  int64_t best = -1;
  double best_distance = tolerance;
  for (size_t i = 0; i < times.size(); ++i) {
    double distance = std::fabs(times[i] - t);
    if (distance <= best_distance) {
      best = static_cast<int64_t>(i);
      best_distance = distance;
    }
  }
  return best;
}

std::vector<PacketInfo> packets(const std::string& path) {
  const std::string text =
      ffprobe({"-show_entries", "packet=pts,dts,pos,size,flags", "-of", "compact"}, path);
  std::vector<PacketInfo> all;
  auto number = [](const std::string& value) {
    return value.empty() || value == "N/A" ? INT64_MIN : std::stoll(value);
  };
  for (const std::string& line : split(text, '\n')) {
    if (line.rfind("packet|", 0) != 0) continue;
    auto fields = compact_fields(line);
    PacketInfo packet;
    packet.pts = number(fields["pts"]);
    packet.dts = number(fields["dts"]);
    packet.pos = number(fields["pos"]);
    packet.size = number(fields["size"]);
    packet.key = fields["flags"].find('K') != std::string::npos;
    all.push_back(packet);
  }
  return all;
}

int64_t key_packet_count(const std::string& path) {
  const std::string text = ffprobe({"-show_entries", "packet=flags", "-of", "compact"}, path);
  int64_t count = 0;
  for (const std::string& line : split(text, '\n')) {
    if (line.rfind("packet|", 0) == 0 && compact_fields(line)["flags"].find('K') != std::string::npos)
      ++count;
  }
  return count;
}

std::vector<std::pair<std::string, std::string>> probe_stream(const std::string& path) {
  const std::string text = ffprobe({"-show_entries", "stream:stream_side_data", "-of", "compact"}, path);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const std::string& line : split(text, '\n')) {
    if (line.rfind("stream|", 0) != 0) continue;
    for (const std::string& part : split(line, '|')) {
      size_t eq = part.find('=');
      if (eq != std::string::npos) pairs.emplace_back(part.substr(0, eq), part.substr(eq + 1));
    }
    break;
  }
  return pairs;
}

std::string probe_stream_value(const std::string& path, const std::string& key) {
  for (const auto& [name, value] : probe_stream(path)) {
    if (name == key) return value;
  }
  return "";
}

// ---- Checking sampler output against the reference ------------------------------------------------

namespace {
// Explicit plans describe every time; keep messages readable.
std::string shortened(const std::string& text) {
  return text.size() <= 72 ? text : text.substr(0, 64) + " ... (" + std::to_string(text.size()) + " chars)";
}

std::string shape_report(const video::SampledFrames& got, const std::string& path, const std::string& plan) {
  std::ostringstream text;
  const int64_t n = static_cast<int64_t>(got.targets.size());
  if (!got.frames.defined() || got.frames.dim() != 4 || got.frames.size(0) != n || got.frames.size(3) != 3 ||
      got.frames.scalar_type() != at::kByte) {
    text << path << " [" << plan << "]: frames should be [" << n << ", H, W, 3] uint8, got "
         << (got.frames.defined() ? got.frames.sizes() : at::IntArrayRef{}) << "\n";
  }
  if (!got.timestamps.defined() || got.timestamps.dim() != 1 || got.timestamps.size(0) != n ||
      got.timestamps.scalar_type() != at::kDouble) {
    text << path << " [" << plan << "]: timestamps should be [" << n << "] float64\n";
  }
  return text.str();
}
}  // namespace

namespace {
// Checks every returned frame with `mismatch(i, reference, timestamps)` (an empty string when frame i
// is right) and lists the first 8 problems.
std::string frame_report(
    const video::SampledFrames& got, const std::string& path, const std::string& full_label,
    const std::function<std::string(size_t, const ReferenceFrames&, const double*)>& mismatch) {
  const std::string label = shortened(full_label);
  std::string shape = shape_report(got, path, label);
  if (!shape.empty()) return shape;
  const ReferenceFrames& reference = reference_frames(path);
  const double* timestamps = got.timestamps.data_ptr<double>();
  std::ostringstream text;
  int mismatches = 0;
  for (size_t i = 0; i < got.targets.size(); ++i) {
    std::string problem = mismatch(i, reference, timestamps);
    if (!problem.empty() && ++mismatches <= 8)
      text << path << " [" << label << "] frame " << i << problem << "\n";
  }
  if (mismatches > 8) text << "... " << mismatches - 8 << " more mismatches\n";
  return text.str();
}
}  // namespace

std::string exactness_report(const video::SampledFrames& got, const std::string& path, int rotation,
                             const std::string& full_plan) {
  return frame_report(
      got, path, full_plan, [&](size_t i, const ReferenceFrames& reference, const double* timestamps) {
        const double target = got.targets[i];
        const int64_t expected = expected_frame(reference.times, target);
        const int index = frame_index(got.frames, static_cast<int64_t>(i), rotation);
        const double time = timestamps[i];
        if (index == expected && std::fabs(time - reference.times[expected]) <= 1e-3) return std::string();
        std::ostringstream text;
        text << ": target " << target << " s -> expected frame " << expected << " (pts "
             << reference.times[expected] << " s), got frame "
             << (index < 0 ? std::string("unreadable") : std::to_string(index)) << " with timestamp " << time
             << " s (reference frame at that time: " << frame_at_time(reference.times, time) << ")";
        return text.str();
      });
}

std::string consistency_report(const video::SampledFrames& got, const std::string& path, int rotation,
                               const std::string& full_what) {
  return frame_report(got, path, full_what,
                      [&](size_t i, const ReferenceFrames& reference, const double* timestamps) {
                        const int index = frame_index(got.frames, static_cast<int64_t>(i), rotation);
                        const int64_t at_time = frame_at_time(reference.times, timestamps[i]);
                        if (index >= 0 && index == at_time) return std::string();
                        std::ostringstream text;
                        text << " (target " << got.targets[i] << " s): timestamp " << timestamps[i]
                             << " s is reference frame " << at_time << " but the picture shows "
                             << (index < 0 ? std::string("no readable index (damaged or substituted)")
                                           : "frame " + std::to_string(index));
                        return text.str();
                      });
}

// ---- Damaged files ------------------------------------------------------------------------------------

void overwrite_random(std::string& bytes, int64_t begin, int64_t end, uint32_t seed) {
  std::mt19937 random(seed);
  for (int64_t i = begin; i < end; ++i) bytes[i] = static_cast<char>(random() & 0xff);
}

DamagedVideo damage_frames(const std::string& original, const std::vector<int>& frames,
                           const std::string& name, uint32_t seed) {
  const ReferenceFrames& reference = reference_frames(original);
  const std::vector<PacketInfo> all = packets(original);
  std::string bytes = test::read_file(original);
  DamagedVideo out;
  for (int frame : frames) {
    if (frame <= 0 || frame >= static_cast<int>(reference.ticks.size()) ||
        reference.pict_type[frame] != 'P') {
      throw std::runtime_error("damage_frames: frame " + std::to_string(frame) + " of " + original +
                               " is not a P-frame");
    }
    auto victim = std::find_if(all.begin(), all.end(), [&](const PacketInfo& packet) {
      return packet.pts == reference.ticks[frame];
    });
    if (victim == all.end() || victim->size < 16 || victim->pos < 0) {
      throw std::runtime_error("damage_frames: no packet of 16+ bytes for frame " + std::to_string(frame));
    }
    overwrite_random(bytes, victim->pos + victim->size / 4, victim->pos + victim->size * 3 / 4, seed + frame);
    int next_key = frame + 1;
    while (next_key < static_cast<int>(reference.key.size()) && !reference.key[next_key]) ++next_key;
    out.spans.push_back({frame, next_key});
  }
  out.path = write_file(name, bytes);
  return out;
}

}  // namespace lvrl::testing_video
