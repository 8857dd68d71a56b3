// Synthetic test videos whose every frame shows its own index, and an independent reference (the
// ffmpeg/ffprobe CLIs) for what the sampler must return.
//
// Why it is built this way:
//  - The index is drawn as a 4×4 grid of large black/white blocks (lavfi `geq`), 12 bits of index
//    and a 4-bit checksum. Blocks are a quarter of the frame each way, so they survive 4:2:0, lossy
//    coding and any resize; the reader looks at block centres only, in normalized coordinates, so
//    odd sizes (638×358) and any output size work. The checksum turns a damaged or substituted frame
//    into "unreadable" (-1) instead of a plausible wrong index most of the time.
//  - Rotation: the pattern is drawn on the coded picture. A reader given a displayed (rotated) frame
//    and the clockwise rotation that was applied for display maps each block centre from coded to
//    displayed coordinates, so a sampler that rotates the wrong way reads as a wrong index.
//  - Expected frames come from ffprobe's per-frame timestamps, never from the sampler's own
//    arithmetic: the frame for target t is the last frame whose pts <= t (the first if t precedes it).
//  - Files are cached across processes (ctest runs every TEST in its own process) in one directory,
//    named by spec and a hash of the exact ffmpeg command lines, written to a temporary name and
//    renamed, so concurrent test processes never see a half-written file.
#pragma once

#include <ATen/Tensor.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/run_process.h"
#include "video/sampling.h"

namespace lvrl::testing_video {

// ---- Running the CLIs -----------------------------------------------------------------------------

// Runs argv (argv[0] searched in PATH) with stdin closed, stdout in `output` and stderr in
// `error_output`; never hangs past timeout_s.
test::ProcessResult run_tool(const std::vector<std::string>& argv, double timeout_s = 180);

// ---- Generating -----------------------------------------------------------------------------------

struct VideoSpec {
  std::string name;               // unique short id: the file name stem, shown in failures
  std::string codec = "libx264";  // libx264, libx265, libvpx-vp9, libaom-av1, mpeg4
  std::string container = "mp4";  // mp4, mov, mkv, webm, ts, avi: the file extension
  int width = 160, height = 96;   // coded size
  int frames = 60;
  std::string rate = "30";          // nominal frame rate as ffmpeg parses it: "30", "30000/1001"
  int gop = 30;                     // keyframe interval, frames (scene cuts off: exactly periodic)
  int bframes = 0;                  // consecutive B-frames (x264, x265, mpeg4); VP9/AV1 ignore it
  bool open_gop = false;            // x264/x265 open GOP: leading B-frames reference the previous GOP
  std::string pix_fmt = "yuv420p";  // or yuv420p10le
  int rotation = 0;                 // clockwise degrees applied for display (= VideoInfo::rotation);
                                    // MP4/MOV only
  bool vfr = false;                 // every 7th frame interval is 4 periods long instead of 1
  bool faststart = false;           // MP4/MOV: moov before mdat (so a truncated copy still opens)

  double fps() const;  // the nominal rate as a number
  int display_width() const { return rotation % 180 ? height : width; }
  int display_height() const { return rotation % 180 ? width : height; }
  std::string describe() const;  // one line with every field, for failure messages
};

// The codec/container matrix every sampling test runs over (see the .cpp for what each case covers).
const std::vector<VideoSpec>& video_matrix();
const VideoSpec& matrix_spec(const std::string& name);  // throws if absent

// The ffmpeg command lines that make the file (one, or two when a rotation tag is added by a
// stream copy).
std::vector<std::vector<std::string>> make_commands(const VideoSpec& spec, const std::string& output);

// Directory shared by all test processes: $LVRL_TEST_VIDEO_DIR, else <gtest TempDir>/lvrl-test-videos-<uid>.
std::string video_dir();

// The file for spec, generated on first use. Throws std::runtime_error with the command and
// ffmpeg's stderr when ffmpeg fails.
std::string make_video(const VideoSpec& spec);

// Writes bytes to <video_dir()>/<name> (atomically) and returns the path.
std::string write_file(const std::string& name, const std::string& bytes);

// ---- Reading the index back -----------------------------------------------------------------------

constexpr int kGrid = 4;        // kGrid × kGrid blocks
constexpr int kIndexBits = 12;  // frames 0..4095
constexpr int kMaxFrames = 1 << kIndexBits;

// The frame index shown in an RGB image [height, width, 3] (row-major, uint8), in display orientation
// after `rotation` clockwise degrees. -1 when unreadable: a block near mid-grey or a checksum mismatch.
// block_levels (optional) gets the 16 block means, coded-order, for failure messages.
int decode_frame_index(const uint8_t* rgb, int width, int height, int rotation = 0,
                       std::vector<int>* block_levels = nullptr);

// Same for frame i of frames [N, H, W, 3] uint8 (contiguous or not).
int frame_index(const at::Tensor& frames, int64_t i, int rotation = 0);

// Every frame as the ffmpeg CLI decodes it (display orientation, every decoded frame, no CFR
// duplication), read back with decode_frame_index. For a damaged file, the frames that came out;
// *error gets the command and ffmpeg's stderr whenever ffmpeg complained or failed.
std::vector<int> cli_frame_indices(const std::string& path, int display_width, int display_height,
                                   int rotation, std::string* error = nullptr);

// ---- Reference timestamps (ffprobe) ---------------------------------------------------------------

struct ReferenceFrames {
  std::vector<double> times;    // display order, seconds relative to the first frame, from
                                // best_effort_timestamp × time_base (exact integer arithmetic first)
  std::vector<int64_t> ticks;   // best_effort_timestamp, stream time_base
  std::vector<bool> key;        // key_frame flag of each decoded frame
  std::vector<char> pict_type;  // 'I', 'P', 'B', '?'
  int64_t time_base_num = 0, time_base_den = 1;
  double start_s = 0;  // absolute time of the first frame
  int untimed = 0;     // frames ffprobe gave no timestamp (timed one interval after the
                       // previous frame)
};

// ffprobe of every frame of stream v:0; cached per path within the process. Throws on failure.
const ReferenceFrames& reference_frames(const std::string& path);
std::vector<double> frame_times(const std::string& path);

// Index of the last frame whose time <= t (within 1e-9 s, absorbing double rounding of exact
// equality); 0 when t precedes the first frame.
int64_t expected_frame(const std::vector<double>& times, double t);

// Index of the frame whose time is within tolerance of t; -1 if none.
int64_t frame_at_time(const std::vector<double>& times, double t, double tolerance = 1e-3);

struct PacketInfo {
  int64_t pts = 0, dts = 0;  // stream time base; INT64_MIN when absent
  int64_t pos = -1, size = 0;
  bool key = false;
};
// Packets of stream v:0 in file order (ffprobe -show_packets).
std::vector<PacketInfo> packets(const std::string& path);

// ---- Damaged files --------------------------------------------------------------------------------

// Seeded random bytes over [begin, end) of `bytes`.
void overwrite_random(std::string& bytes, int64_t begin, int64_t end, uint32_t seed);

// A copy of `original` with random bytes (seed) over the middle half of the packet of each frame in
// `frames` (display indices, each a P-frame), written as <video_dir()>/<name>.
struct DamagedVideo {
  std::string path;
  // [first, end) display indices that cannot decode, worked out by hand from ffprobe of the
  // original: each damaged frame up to the next keyframe (every later frame of the GOP references
  // it). Exact for closed GOPs without B-frames, which is what this is for.
  std::vector<std::pair<int, int>> spans;
};
DamagedVideo damage_frames(const std::string& original, const std::vector<int>& frames,
                           const std::string& name, uint32_t seed);

// Packets of stream v:0 with the K flag (ffprobe -show_entries packet=flags).
int64_t key_packet_count(const std::string& path);

// ffprobe -show_entries stream=... for v:0 as key → value ("codec_name", "width", "pix_fmt", ...),
// including side data keys such as "rotation".
std::vector<std::pair<std::string, std::string>> probe_stream(const std::string& path);
std::string probe_stream_value(const std::string& path, const std::string& key);

// Runs work() on its own thread and returns its result; if it takes longer than `seconds` the test
// binary reports `what` and exits with status 1 (a hung decoder cannot be cancelled, and ctest
// must see the failure rather than wait forever).
template <class Work>
auto run_with_deadline(double seconds, const std::string& what, Work work) -> decltype(work()) {
  using Result = decltype(work());
  auto task = std::make_shared<std::packaged_task<Result()>>(std::move(work));
  std::future<Result> result = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (result.wait_for(std::chrono::duration<double>(seconds)) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s did not finish within %.0f s (hang)\n", what.c_str(), seconds);
    std::fflush(stderr);
    std::_Exit(1);
  }
  return result.get();
}

// ---- Checking sampler output against the reference ------------------------------------------------

// Every returned frame against ffprobe's frames of `path`: its decoded index is the expected frame
// for its target (last pts <= target) and its timestamp is that frame's time (±1e-3 s). Also checks
// the shapes agree. "" when everything matches, else the first mismatches, each with file, plan,
// target, expected index/time and what came back.
std::string exactness_report(const video::SampledFrames& got, const std::string& path, int rotation,
                             const std::string& plan);

// Every returned frame is what it claims to be: its decoded index is the reference frame at its
// reported timestamp (no substituted or damaged frame), whatever the target. "" when true.
std::string consistency_report(const video::SampledFrames& got, const std::string& path, int rotation,
                               const std::string& what);

}  // namespace lvrl::testing_video
