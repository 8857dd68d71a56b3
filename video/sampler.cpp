// The frame-exact sampler. Targets are visited in increasing time. For each, we seek to the last
// keyframe at or before it only when that keyframe lies past everything fed to the decoder so far
// (otherwise decoding forward is cheaper), then decode forward, keeping the last frame whose pts <= t
// as the candidate until a later frame (or the end of the stream) proves it final.
//
// Correctness rules, each learned from a reader that got it wrong:
// - After a seek, packets before the first keyframe are dropped and frames presented before that
//   keyframe are discarded: open-GOP leading frames reference the previous GOP and decode garbled.
//   A target falling among them is served by seeking one keyframe earlier.
// - A seek that lands late (container indexes hold dts; MPEG-TS seeks by pts approximately) shows up
//   as a first frame past the target with no candidate: seek one keyframe earlier and retry.
// - Non-reference packets that cannot be any target's answer are skipped (AVDISCARD_NONREF): a
//   packet with pts p is the answer for the first target t >= p only if no packet fed since the seek
//   has pts in (p, t]. Reference frames are always decoded, so later frames stay exact.
// - A damaged packet or a frame the decoder flags as corrupt starts a damaged span that lasts until
//   a keyframe fed after it is presented; frames in it are never returned, and a warning names it.
// - Every frame found damaged is remembered (across seeks): a target is damaged when one lies after
//   the last clean frame at or before it, up to the target itself — its own frame did not decode.
//   A target is resolved when the first clean frame past it arrives, so both neighbours are known
//   and OnDamage::Nearest can take the later one. Damage found late (frame threads report errors
//   packets later) un-resolves the targets it may touch; the next clean frame resolves them again.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "video/av_check.h"
#include "video/demuxer.h"
#include "video/frame_converter.h"
#include "video/qwen_preprocess.h"
#include "video/sampling.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
}

namespace lvrl::video {
namespace {
constexpr int64_t kNoTs = std::numeric_limits<int64_t>::min();

int64_t frame_pts(const AVFrame* frame) {
  if (frame->best_effort_timestamp != AV_NOPTS_VALUE) return frame->best_effort_timestamp;
  if (frame->pts != AV_NOPTS_VALUE) return frame->pts;
  return frame->pkt_dts != AV_NOPTS_VALUE ? frame->pkt_dts : kNoTs;
}

int64_t packet_pts(const AVPacket* packet) {
  return packet->pts != AV_NOPTS_VALUE ? packet->pts : kNoTs;
}

// Resolves sorted target timestamps (stream time base) to converted frames.
class Sampler {
 public:
  Sampler(Demuxer& demuxer, std::vector<int64_t> targets, FrameConverter& converter, at::Tensor rows,
          std::vector<double>& times, std::vector<std::string>& warnings, DecodeStats& stats,
          OnDamage on_damage)
      : demuxer_(demuxer),
        decoder_(demuxer.decoder()),
        targets_(std::move(targets)),
        converter_(converter),
        rows_(std::move(rows)),
        times_(times),
        warnings_(warnings),
        stats_(stats),
        frame_(make_frame()),
        packet_(make_packet()),
        emitted_pts_(targets_.size(), kNoTs),
        previous_pts_(targets_.size(), kNoTs),
        next_pts_(targets_.size(), kNoTs),
        on_damage_(on_damage),
        frame_rate_(demuxer.info().frame_rate > 0 ? demuxer.info().frame_rate : 30.0) {}

  void run_exact();
  void run_keyframes();
  AVFrame* decode_keyframe(size_t key);  // the keyframe's own frame, nullptr when it does not decode

  // Per target, after a run: whether its own frame did not decode, and if so the span of frames
  // around it that did not (stream ticks; end kNoTs: to the end of the stream).
  struct TargetDamage {
    bool damaged = false;
    int64_t begin = 0, end = 0;
  };
  std::vector<TargetDamage> damage() const;

 private:
  void seek(size_t keyframe);
  void maybe_seek();
  bool seek_earlier();  // false when already at the first keyframe
  bool retreat();       // an error in the first GOP after a seek: decode from one keyframe earlier
  void decode_error(int64_t ts, const std::string& what, bool flagged_frame);
  AVFrame* next_frame();  // nullptr at the end of the stream
  void feed_packet();
  bool skippable(int64_t pts) const;
  void emit(size_t target, const AVFrame* frame);
  // Gives the target its frame: the newest clean frame in history (at or before it) or `after`, the
  // first clean frame past it (nullptr at the end of the stream), as the damage policy says.
  void resolve(size_t target, const AVFrame* after);
  bool damage_between(int64_t after, int64_t upto) const;  // a damaged frame with pts in (after, upto]
  int64_t output_pts(AVFrame* frame);  // the frame's pts, extrapolated when the decoder gives none
  // Damage found at `ts`: by an error (`flagged_frame` false: the bad packet is one of those still in
  // flight) or on a frame the decoder flagged (the bad packet is that frame's own; its dependents are
  // every packet fed after it).
  void note_damage(int64_t ts, const std::string& what, bool flagged_frame = false);
  void roll_back(int64_t suspect);  // forget frames (and re-resolve targets) presented at or after
  // After a seek, open-GOP leading frames (presented before the keyframe) decode with missing
  // references and report errors that are no damage: an error while nothing in flight lies past
  // the keyframe is theirs.
  bool leading_frame_error() const {
    if (!warming_up_ || floor_ == kNoTs) return false;
    for (size_t i = fed_log_.size() - std::min(fed_log_.size(), in_flight()); i < fed_log_.size(); ++i) {
      if (fed_log_[i] > floor_) return false;
    }
    return true;
  }
  size_t in_flight() const {
    // Frame threads report a packet's decode error when the packet thread_count - 1 later is
    // submitted: the bad packet is among the last thread_count fed.
    return (decoder_->active_thread_type & FF_THREAD_FRAME) ? std::max(decoder_->thread_count, 1) : 1;
  }
  bool damaged_frame(const AVFrame* frame, int64_t pts);
  double seconds(int64_t ts) const { return ts == kNoTs ? std::nan("") : demuxer_.seconds(ts); }

  Demuxer& demuxer_;
  AVCodecContext* decoder_;
  std::vector<int64_t> targets_;  // ascending, unique
  FrameConverter& converter_;
  at::Tensor rows_;             // [targets, H, W, 3] uint8
  std::vector<double>& times_;  // [targets] seconds of the frame emitted for each
  std::vector<std::string>& warnings_;
  DecodeStats& stats_;

  FramePtr frame_;
  PacketPtr packet_;
  // Recent clean frames since the last seek, newest last: the newest is the candidate. Kept a few
  // deep so damage found late (frame threads report errors packets later) can be rolled back.
  std::deque<FramePtr> history_;
  std::deque<int64_t> fed_log_;        // pts of the last packets fed since the seek, decode order
  std::vector<int64_t> emitted_pts_;   // [targets] pts of the frame each resolved target got
  std::vector<int64_t> previous_pts_;  // [targets] the last clean frame at or before it (kNoTs: none)
  std::vector<int64_t> next_pts_;      // [targets] the first clean frame after it (kNoTs: none)
  std::set<int64_t> damage_points_;    // pts of every frame found damaged, kept across seeks
  OnDamage on_damage_;
  double frame_rate_;
  size_t next_ = 0;              // first unresolved target
  bool at_start_ = true;         // decoding from the stream's first packet
  size_t seek_key_ = 0;          // keyframe of the last seek
  size_t key_cap_ = SIZE_MAX;    // for the current target: seek no later than this keyframe
  bool need_key_ = false;        // after a seek: drop packets until a keyframe
  int64_t floor_ = kNoTs;        // after a seek: frames presented before this are discarded
  double position_ = -INFINITY;  // greatest presentation time fed since the last seek, seconds
  std::set<int64_t> fed_pts_;    // pts of packets fed since the last seek
  bool draining_ = false;
  // Damage: a span [begin, end) of presentation times, open (end unknown) until the next keyframe is
  // fed, plus every packet fed while a span is open (dependents of the bad packet presented before
  // it, like B-frames, are fed after it).
  struct Span {
    int64_t begin, end;
    size_t warning;  // index into warnings_
  };
  std::vector<Span> spans_;
  bool span_open_ = false;
  std::set<int64_t> tainted_;
  int64_t last_emitted_pts_ = kNoTs;
  int decode_errors_in_a_row_ = 0;
  bool warming_up_ = false;          // after a seek, until a frame at or past floor_: errors belong
                                     // to open-GOP leading frames missing their references
  int64_t last_output_pts_ = kNoTs;  // for frames the decoder hands out without any timestamp
  bool keyframes_only_ = false;      // Accuracy::Keyframe on a stream we cannot seek in
  bool exact_mode_ = false;          // run_exact: may retreat to earlier keyframes
  bool first_gop_ = false;           // since the last seek, no second keyframe fed yet
  size_t first_target_since_seek_ = 0;
  std::set<size_t> unclean_keys_;  // keyframes a seek cannot start from cleanly
};

void Sampler::seek(size_t keyframe) {
  LVRL_DEBUG("seek to keyframe {} at {:.3f} s (target {:.3f} s)", keyframe,
             demuxer_.keyframes()[keyframe].time_s,
             next_ < targets_.size() ? seconds(targets_[next_]) : -1.0);
  demuxer_.seek_to_keyframe(keyframe);
  ++stats_.seeks;
  seek_key_ = keyframe;
  at_start_ = keyframe == 0;
  need_key_ = true;
  floor_ = kNoTs;
  position_ = demuxer_.keyframes()[keyframe].time_s;
  fed_pts_.clear();
  fed_log_.clear();
  history_.clear();
  draining_ = false;
  spans_.clear();  // a keyframe starts clean; the damage was already reported
  span_open_ = false;
  tainted_.clear();
  warming_up_ = true;
  first_gop_ = keyframe > 0;
  first_target_since_seek_ = next_;
  last_output_pts_ = kNoTs;
}

void Sampler::maybe_seek() {
  if (!demuxer_.timestamps_survive_seeks()) return;
  double target_s = demuxer_.seconds(targets_[next_]);
  size_t key = std::min(demuxer_.keyframe_at_or_before(target_s), key_cap_);
  while (key > 0 && unclean_keys_.count(key) != 0) --key;
  // Seek only past what the decoder has already been fed: behind it, decoding forward is cheaper.
  if (key > 0 && demuxer_.keyframes()[key].time_s > position_ && (key > seek_key_ || at_start_)) seek(key);
}

bool Sampler::retreat() {
  // Errors in the first GOP after a seek are references the seek skipped (open GOPs, B-frames that
  // reach back past the keyframe), not damage: decode from the keyframe before instead, re-resolving
  // the targets this GOP served. Real damage shows up again once decoding runs through the GOP.
  if (!exact_mode_ || !first_gop_ || seek_key_ == 0) return false;
  unclean_keys_.insert(seek_key_);
  for (size_t target = first_target_since_seek_; target < next_; ++target) emitted_pts_[target] = kNoTs;
  next_ = first_target_since_seek_;
  last_emitted_pts_ = kNoTs;
  key_cap_ = seek_key_ - 1;
  seek(key_cap_);
  return true;
}

void Sampler::decode_error(int64_t ts, const std::string& what, bool flagged_frame) {
  if (leading_frame_error() || retreat()) return;
  note_damage(ts, what, flagged_frame);
}

bool Sampler::seek_earlier() {
  if (seek_key_ == 0 || at_start_) return false;
  key_cap_ = seek_key_ - 1;
  seek(key_cap_);
  return true;
}

bool Sampler::skippable(int64_t pts) const {
  if (pts == kNoTs) return false;
  if (floor_ != kNoTs && pts < floor_) return true;  // discarded anyway
  auto first_at_or_after = std::lower_bound(targets_.begin() + next_, targets_.end(), pts);
  if (first_at_or_after == targets_.end()) return true;  // no target can use it
  auto later = fed_pts_.upper_bound(pts);
  return later != fed_pts_.end() && *later <= *first_at_or_after;
}

void Sampler::note_damage(int64_t ts, const std::string& what, bool flagged_frame) {
  std::vector<int64_t> suspects;
  auto own = std::find(fed_log_.begin(), fed_log_.end(), ts);
  if (flagged_frame && own != fed_log_.end()) {
    suspects.assign(own, fed_log_.end());
  } else {
    suspects.assign(fed_log_.end() - std::min(fed_log_.size(), in_flight()), fed_log_.end());
    if (ts != kNoTs) suspects.push_back(ts);
  }
  int64_t suspect = suspects.empty() ? kNoTs : *std::min_element(suspects.begin(), suspects.end());
  if (span_open_) {
    spans_.back().begin = suspect == kNoTs ? spans_.back().begin : std::min(spans_.back().begin, suspect);
  } else {
    warnings_.push_back(fmt::format("{}: {} at {:.3f} s; frames are skipped until the next keyframe",
                                    demuxer_.path(), what, seconds(ts != kNoTs ? ts : suspect)));
    spans_.push_back({suspect == kNoTs ? INT64_MIN : suspect, INT64_MAX, warnings_.size() - 1});
    span_open_ = true;
  }
  tainted_.insert(suspects.begin(), suspects.end());
  for (int64_t pts : suspects) {
    if (pts != kNoTs) damage_points_.insert(pts);
  }
  if (suspect != kNoTs) roll_back(suspect);
}

void Sampler::roll_back(int64_t suspect) {
  while (!history_.empty() && frame_pts(history_.back().get()) >= suspect) history_.pop_back();
  // Targets given a frame at or after the suspect, or lying at or after it (their own frame may be
  // the damaged one), wait for the next clean frame again. Targets ascend and so do their frames.
  size_t first = next_;
  while (first > first_target_since_seek_ && emitted_pts_[first - 1] != kNoTs &&
         (emitted_pts_[first - 1] >= suspect || targets_[first - 1] >= suspect)) {
    --first;
  }
  for (size_t target = first; target < next_; ++target) emitted_pts_[target] = kNoTs;
  next_ = first;
  last_emitted_pts_ = first > 0 ? emitted_pts_[first - 1] : kNoTs;  // what rows_[first - 1] holds
}

bool Sampler::damaged_frame(const AVFrame* frame, int64_t pts) {
  if ((frame->flags & AV_FRAME_FLAG_CORRUPT) || frame->decode_error_flags != 0) {
    decode_error(pts, "corrupt frame", /*flagged_frame=*/true);
    return true;
  }
  bool in_span = tainted_.count(pts) != 0;
  for (const Span& span : spans_) in_span = in_span || (pts >= span.begin && pts < span.end);
  if (in_span) damage_points_.insert(pts);
  return in_span;
}

void Sampler::feed_packet() {
  AVPacket* packet = packet_.get();
  int rc = demuxer_.read_packet(packet);
  if (rc == AVERROR_INVALIDDATA) {
    note_damage(fed_pts_.empty() ? kNoTs : *fed_pts_.rbegin(), "unreadable packet");
    return;
  }
  if (rc < 0) {
    if (rc != AVERROR_EOF) {
      warnings_.push_back(fmt::format("{}: read error after {:.3f} s, treated as the end: {}",
                                      demuxer_.path(), position_, av_error_text(rc)));
      if (!fed_pts_.empty()) damage_points_.insert(*fed_pts_.rbegin() + 1);  // what follows is lost
    }
    avcodec_send_packet(decoder_, nullptr);  // drain what the decoder holds
    draining_ = true;
    return;
  }
  ++stats_.packets_read;
  int64_t pts = packet_pts(packet);
  bool key = packet->flags & AV_PKT_FLAG_KEY;
  if (need_key_) {
    if (!key) {
      av_packet_unref(packet);
      return;
    }
    need_key_ = false;
    floor_ = pts;
  } else if (key) {
    first_gop_ = false;
  }
  if (span_open_ && key && pts != kNoTs) {
    Span& span = spans_.back();
    span.end = pts;
    span_open_ = false;
    warnings_[span.warning] +=
        fmt::format(" (damaged span {:.3f} s to {:.3f} s)", seconds(span.begin), seconds(pts));
  }
  if (span_open_ && pts != kNoTs) {
    tainted_.insert(pts);
    damage_points_.insert(pts);
  }
  if (pts != kNoTs) {
    position_ = std::max(position_, demuxer_.seconds(pts));
    fed_pts_.insert(pts);
    fed_log_.push_back(pts);
    if (fed_log_.size() > 64) fed_log_.pop_front();  // past the decoder's reorder and thread depth
  }
  decoder_->skip_frame = skippable(pts) ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
  rc = avcodec_send_packet(decoder_, packet);
  av_packet_unref(packet);
  if (rc < 0 && rc != AVERROR(EAGAIN)) {
    decode_error(pts, "undecodable packet (" + av_error_text(rc) + ")", false);
  }
}

AVFrame* Sampler::next_frame() {
  while (true) {
    av_frame_unref(frame_.get());
    int rc = avcodec_receive_frame(decoder_, frame_.get());
    if (rc == 0) {
      ++stats_.frames_decoded;
      decode_errors_in_a_row_ = 0;
      return frame_.get();
    }
    if (rc == AVERROR_EOF) return nullptr;
    if (rc != AVERROR(EAGAIN)) {
      decode_error(last_output_pts_, "decoder error (" + av_error_text(rc) + ")", false);
      if (++decode_errors_in_a_row_ > 1000) return nullptr;
      continue;
    }
    if (draining_) return nullptr;
    feed_packet();
  }
}

int64_t Sampler::output_pts(AVFrame* frame) {
  int64_t pts = frame_pts(frame);
  if (pts == kNoTs && last_output_pts_ != kNoTs) {
    // The last frames of a stream without pts (AVI) leave the decoder with no timestamp at all:
    // they follow the previous frame by one frame duration.
    int64_t step = frame->pkt_duration > 0 ? frame->pkt_duration
                                           : demuxer_.timestamp(1.0 / frame_rate_) - demuxer_.timestamp(0);
    pts = last_output_pts_ + std::max<int64_t>(step, 1);
  }
  if (pts != kNoTs) {
    frame->best_effort_timestamp = pts;  // so emit() and the candidate see the same time
    last_output_pts_ = pts;
  }
  return pts;
}

void Sampler::emit(size_t target, const AVFrame* frame) {
  int64_t pts = frame_pts(frame);
  if (target > 0 && pts == last_emitted_pts_) {
    rows_[target].copy_(rows_[target - 1]);  // several targets on one frame: convert once
  } else {
    converter_.convert(frame, rows_[target]);
  }
  times_[target] = demuxer_.seconds(pts);
  emitted_pts_[target] = pts;
  last_emitted_pts_ = pts;
}

bool Sampler::damage_between(int64_t after, int64_t upto) const {
  auto point = damage_points_.upper_bound(after);
  return point != damage_points_.end() && *point <= upto;
}

void Sampler::resolve(size_t target, const AVFrame* after) {
  const AVFrame* before = history_.empty() ? nullptr : history_.back().get();
  LVRL_ASSERT(before != nullptr || after != nullptr, "a target resolved without any frame");
  const int64_t time = targets_[target];
  previous_pts_[target] = before != nullptr ? frame_pts(before) : kNoTs;
  next_pts_[target] = after != nullptr ? frame_pts(after) : kNoTs;
  const AVFrame* chosen = before != nullptr ? before : after;  // no frame before: the target precedes them
  if (on_damage_ == OnDamage::Nearest && before != nullptr && after != nullptr &&
      damage_between(previous_pts_[target], time) &&
      next_pts_[target] - time < time - previous_pts_[target]) {
    chosen = after;
  }
  emit(target, chosen);
}

std::vector<Sampler::TargetDamage> Sampler::damage() const {
  std::vector<TargetDamage> out(targets_.size());
  if (!exact_mode_ || keyframes_only_) return out;  // keyframe accuracy: a keyframe decodes or fails
  for (size_t target = 0; target < targets_.size(); ++target) {
    auto point = damage_points_.upper_bound(previous_pts_[target]);  // kNoTs is the lowest value
    if (point == damage_points_.end() || *point > targets_[target]) continue;
    out[target] = {true, *point, next_pts_[target]};
  }
  return out;
}

void Sampler::run_exact() {
  exact_mode_ = true;
  while (next_ < targets_.size()) {
    maybe_seek();
    AVFrame* frame = next_frame();
    if (frame == nullptr) {  // end of stream: the candidate is the last frame for every later target
      if (history_.empty()) {
        if (seek_earlier()) continue;
        throw InputError({demuxer_.path(), 0, "", fmt::format("{:.3f} s", seconds(targets_[next_]))},
                         "no decodable frame at or before this time");
      }
      const AVFrame* last_frame = history_.back().get();
      double last = demuxer_.seconds(frame_pts(last_frame));
      if (demuxer_.seconds(targets_.back()) > last + 1.0) {
        warnings_.push_back(
            fmt::format("{}: frames end at {:.3f} s; later targets (up to {:.3f} s) get the last frame",
                        demuxer_.path(), last, demuxer_.seconds(targets_.back())));
      }
      for (; next_ < targets_.size(); ++next_) resolve(next_, nullptr);
      return;
    }
    int64_t pts = output_pts(frame);
    if (pts == kNoTs) {
      note_damage(kNoTs, "frame without any timestamp");
      continue;
    }
    if (floor_ != kNoTs && pts < floor_) continue;  // open-GOP leading frame after a seek
    warming_up_ = false;
    if (damaged_frame(frame, pts)) continue;
    bool restarted = false;
    while (next_ < targets_.size() && pts > targets_[next_]) {
      if (!history_.empty() || at_start_) {
        resolve(next_, frame);  // no history at the start: the target precedes the first frame
      } else {
        restarted = seek_earlier();  // landed late: the answer lies before this keyframe
        LVRL_ASSERT(restarted, "late landing without an earlier keyframe");
        break;
      }
      ++next_;
      key_cap_ = SIZE_MAX;
    }
    if (restarted || next_ == targets_.size()) continue;
    if (keyframes_only_ && !frame->key_frame) continue;
    FramePtr kept = make_frame();
    LVRL_AV_CHECK(av_frame_ref(kept.get(), frame));
    history_.push_back(std::move(kept));
    if (history_.size() > 8) history_.pop_front();
  }
}

AVFrame* Sampler::decode_keyframe(size_t key) {
  // Seek, send the keyframe's one packet, drain: draining makes the decoder give the frame up at
  // once instead of waiting for reorder-delay frames that keyframe-only decoding never sends.
  seek(key);
  AVPacket* packet = packet_.get();
  int rc = 0;
  while ((rc = demuxer_.read_packet(packet)) == 0 && !(packet->flags & AV_PKT_FLAG_KEY))
    av_packet_unref(packet);
  if (rc < 0) return nullptr;
  ++stats_.packets_read;
  int64_t key_pts = packet_pts(packet);
  rc = avcodec_send_packet(decoder_, packet);
  av_packet_unref(packet);
  avcodec_send_packet(decoder_, nullptr);
  while (rc >= 0 && (rc = avcodec_receive_frame(decoder_, frame_.get())) == 0) {
    ++stats_.frames_decoded;
    int64_t pts = output_pts(frame_.get());
    if (pts != kNoTs && (key_pts == kNoTs || pts >= key_pts) && !damaged_frame(frame_.get(), pts)) {
      return frame_.get();
    }
    av_frame_unref(frame_.get());
  }
  return nullptr;
}

void Sampler::run_keyframes() {
  if (!demuxer_.timestamps_survive_seeks()) {
    keyframes_only_ = true;  // decode forward, taking only keyframes as candidates
    run_exact();
    return;
  }
  size_t previous_key = SIZE_MAX;
  for (next_ = 0; next_ < targets_.size(); ++next_) {
    size_t key = demuxer_.keyframe_at_or_before(demuxer_.seconds(targets_[next_]));
    if (key == previous_key) {
      rows_[next_].copy_(rows_[next_ - 1]);
      times_[next_] = times_[next_ - 1];
      continue;
    }
    previous_key = key;
    AVFrame* frame = decode_keyframe(key);
    // Index times may be decode times: a keyframe presented after the target is not "at or before".
    while (frame != nullptr && key > 0 && frame_pts(frame) > targets_[next_]) frame = decode_keyframe(--key);
    if (frame == nullptr) {
      throw InputError({demuxer_.path(), 0, "", fmt::format("{:.3f} s", demuxer_.keyframes()[key].time_s)},
                       "the keyframe at this time does not decode");
    }
    emit(next_, frame);
    av_frame_unref(frame_.get());
  }
}

// The spans damaged targets fell in, ascending, each once, in seconds.
std::vector<DamagedSpan> damaged_spans(const Demuxer& demuxer,
                                       const std::vector<Sampler::TargetDamage>& damage) {
  std::set<std::pair<int64_t, int64_t>> ticks;
  for (const Sampler::TargetDamage& target : damage) {
    if (target.damaged) ticks.insert({target.begin, target.end == kNoTs ? INT64_MAX : target.end});
  }
  std::vector<DamagedSpan> spans;
  for (const auto& [begin, end] : ticks) {
    spans.push_back({demuxer.seconds(begin), end == INT64_MAX ? INFINITY : demuxer.seconds(end)});
  }
  return spans;
}

// OnDamage::Error: the first damaged target, named with its span and every other span.
void refuse_damage(const Demuxer& demuxer, const std::vector<int64_t>& targets,
                   const std::vector<Sampler::TargetDamage>& damage, const std::vector<DamagedSpan>& spans) {
  for (size_t target = 0; target < targets.size(); ++target) {
    if (!damage[target].damaged) continue;
    const DamagedSpan span = damaged_spans(demuxer, {damage[target]}).front();
    std::vector<std::string> all;
    for (const DamagedSpan& each : spans) all.push_back(span_text(each));
    throw InputError(
        {demuxer.path(), 0, "damaged span", span_text(span)},
        fmt::format("the frames there do not decode and the frame for {:.3f} s is one of them "
                    "(on-damage policy error; {} damaged span{} where frames were asked for: {})",
                    demuxer.seconds(targets[target]), spans.size(), spans.size() == 1 ? "" : "s",
                    fmt::join(all, ", ")));
  }
}

std::pair<int, int> output_size(const VideoInfo& info, const OutputSize& size, int64_t frames) {
  if (size.width > 0 || size.height > 0) {
    if (size.width <= 0 || size.height <= 0 || size.width > 16384 || size.height > 16384) {
      throw InputError({"", 0, "size", fmt::format("{}x{}", size.width, size.height)},
                       "expected both width and height in 1..16384");
    }
    return {size.width, size.height};
  }
  auto [height, width] =
      video_frame_size(info.height, info.width, frames, size.min_pixels, size.max_pixels, size.total_pixels);
  return {width, height};
}
}  // namespace

SampledFrames sample_frames(const std::string& path, const SamplingPlan& plan, const OutputSize& size,
                            const SampleOptions& options) {
  Demuxer demuxer(path, options.open);
  const VideoInfo& info = demuxer.info();
  SampledFrames result;
  result.info = info;
  result.targets = plan.targets(info.duration_s);
  const int64_t count = static_cast<int64_t>(result.targets.size());
  auto [width, height] = output_size(info, size, count);

  double estimate = std::max<double>(info.frame_count, info.duration_s * std::max(info.frame_rate, 1.0));
  demuxer.set_packet_budget(options.packet_budget > 0 ? options.packet_budget
                                                      : 4 * static_cast<int64_t>(estimate) + 10000);

  // Targets in stream ticks, sorted and unique; `slot[i]` maps request i to its unique target.
  std::vector<int64_t> ticks(count);
  for (int64_t i = 0; i < count; ++i) {
    // The frame for t has pts <= t: round the target down to a tick, forgiving float noise.
    double exact = result.targets[i] / av_q2d(demuxer.stream()->time_base);
    ticks[i] = demuxer.timestamp(0) + static_cast<int64_t>(std::floor(exact + 1e-6));
  }
  std::vector<int64_t> unique = ticks;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());

  FrameConverter converter(width, height, info.rotation);
  at::Tensor rows = at::empty({static_cast<int64_t>(unique.size()), height, width, 3}, at::kByte);
  std::vector<double> times(unique.size());
  Sampler sampler(demuxer, unique, converter, rows, times, result.warnings, result.stats, options.on_damage);
  if (options.accuracy == Accuracy::Keyframe) {
    sampler.run_keyframes();
  } else {
    sampler.run_exact();
  }
  const std::vector<Sampler::TargetDamage> damage = sampler.damage();  // [unique]
  result.on_damage = options.on_damage;
  result.damaged_spans = damaged_spans(demuxer, damage);
  if (options.on_damage == OnDamage::Error) refuse_damage(demuxer, unique, damage, result.damaged_spans);

  // Request i → its unique target; under Drop only the requests whose frame decoded.
  std::vector<int64_t> slot;
  std::vector<double> kept_targets;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t unique_index = std::lower_bound(unique.begin(), unique.end(), ticks[i]) - unique.begin();
    const bool damaged = damage[unique_index].damaged;
    if (damaged && options.on_damage == OnDamage::Drop) {
      result.dropped.push_back(result.targets[i]);
      continue;
    }
    slot.push_back(unique_index);
    kept_targets.push_back(result.targets[i]);
    result.damaged.push_back(damaged);
  }
  result.targets = std::move(kept_targets);
  at::Tensor timestamps = at::tensor(times, at::kDouble);
  bool identity = slot.size() == unique.size();
  for (size_t i = 0; identity && i < slot.size(); ++i) identity = slot[i] == static_cast<int64_t>(i);
  if (identity) {  // uniform and fps plans: no copy of what may be gigabytes of frames
    result.frames = rows;
    result.timestamps = timestamps;
  } else {
    at::Tensor index = at::tensor(slot, at::kLong);
    result.frames = rows.index_select(0, index);
    result.timestamps = timestamps.index_select(0, index);
  }
  return result;
}

}  // namespace lvrl::video
