// FFmpeg's own log lines ("[h264 @ 0x...] concealing 120 DC, 120 AC, 120 MV errors") go through
// lvrl's logger at debug level instead of raw to stderr: a damaged file otherwise buries a
// command's output under hundreds of decoder lines, while the sampler already reports each damaged
// span once, in its own words. `LVRL_LOG_LEVEL=debug` shows them again, prefixed "ffmpeg:".
#pragma once

namespace lvrl::video {

// Installs the route (av_log_set_callback) once per process; cheap to call again. Every entry into
// FFmpeg in video/ (opening a file) calls it first.
void route_ffmpeg_log();

}  // namespace lvrl::video
