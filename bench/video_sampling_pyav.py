#!/usr/bin/python3
"""PyAV anchors for bench/video_sampling.cpp: the same files and target timestamps, fetched the way
Python pipelines do it. Run by bench_video_sampling with Debian's python3 (python3-av); not on its own.

  video_sampling_pyav.py JOB.json OUT.json

JOB: {"width", "height", "repeat", "modes": [...], "files": [{"path", "target_ticks": [...],
      "thumbs": optional path for [N, 18, 32] float32 block means of mode seek_every's frames}]}
target_ticks are absolute pts in the stream's time base (the first frame's pts included); the frame for a target
is the last frame whose pts <= it (the first frame when the target precedes them all).

Modes (every file in the job, one after another, timed together; the min over `repeat` runs):
  seek_every        seek before every target (backward, to a keyframe), decode forward until the
                    first frame past it: what most Python pipelines do.
  seek_when_needed  a demux-only keyframe scan (timed), then one decoding pass that seeks only when
                    the target's keyframe lies past the last decoded frame: the best a careful Python
                    user gets.
Both use frame threading (stream.thread_type = "AUTO", PyAV's default thread count), convert only
the chosen frames (reformat to rgb24 at the output size, bicubic, the same colour matrix rule as
lvrl: BT.709 for unlabelled HD, BT.601 otherwise) and take them as numpy arrays.
"""
import bisect
import json
import os
import sys
import time

import av
import av.logging
import numpy as np

# PyAV routes FFmpeg's log lines through a Python callback; with frame threading a decoder thread can
# then wait for the GIL while the interpreter shuts down, and the process never exits (PyAV issue
# #909). FFmpeg's own stderr logger avoids that.
av.logging.restore_default_callback()


def colorspace_for(frame):
    # lvrl's rule for unlabelled video (video/frame_converter.cpp); the benchmark's files are unlabelled.
    return "ITU709" if frame.width >= 1280 or frame.height > 576 else "ITU601"


class Converter:
    """Converts chosen frames; the same frame for several targets is converted once."""

    def __init__(self, width, height, want_thumbs):
        self.width, self.height = width, height
        self.want_thumbs = want_thumbs
        self.thumbs = []
        self.thumb_seconds = 0.0  # excluded from the timing: the benchmark's own check
        self.last_pts, self.last_rgb = None, None

    def convert(self, frame):
        if frame.pts != self.last_pts:
            rgb = frame.reformat(width=self.width, height=self.height, format="rgb24",
                                 src_colorspace=colorspace_for(frame), interpolation="BICUBIC").to_ndarray()
            self.last_pts, self.last_rgb = frame.pts, rgb
        if self.want_thumbs:
            begin = time.perf_counter()
            self.thumbs.append(block_means(self.last_rgb))
            self.thumb_seconds += time.perf_counter() - begin
        return self.last_rgb


def block_means(rgb):
    """[H, W, 3] uint8 → [18, 32] float32: the mean of each block over its pixels and channels."""
    h, w, _ = rgb.shape
    assert h % 18 == 0 and w % 32 == 0, "output size must divide into 32x18 blocks"
    blocks = rgb.reshape(18, h // 18, 32, w // 32, 3).astype(np.float32)
    return blocks.mean(axis=(1, 3, 4))


def open_video(path):
    container = av.open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def sample_seek_every(path, ticks, converter, counters):
    container, stream = open_video(path)
    start = stream.start_time or 0
    answers = []
    for tick in ticks:
        back = 0  # seconds to seek further back when a seek lands past the target
        while True:
            seek_to = max(tick - int(back / stream.time_base), start)
            container.seek(seek_to, stream=stream, backward=True, any_frame=False)
            counters["seeks"] += 1
            chosen, first = None, None
            for frame in container.decode(stream):
                counters["decoded"] += 1
                if frame.pts is None:
                    continue
                if first is None:
                    first = frame
                if frame.pts > tick:
                    break
                chosen = frame
            if chosen is not None:
                break
            if seek_to == start:  # the target precedes the first frame
                chosen = first
                break
            back = max(1.0, 2 * back)
        if chosen is None:
            raise RuntimeError(f"{path}: no frame for tick {tick}")
        converter.convert(chosen)
        answers.append(chosen.pts)
    container.close()
    return answers


def keyframe_scan(path):
    container = av.open(path)
    stream = container.streams.video[0]
    keys = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
    container.close()
    return sorted(keys)


def sample_seek_when_needed(path, ticks, converter, counters):
    keys = keyframe_scan(path)
    container, stream = open_video(path)
    start = stream.start_time or 0
    order = sorted(range(len(ticks)), key=lambda i: ticks[i])
    answers = [None] * len(ticks)
    frames = None               # the decoding generator since the last seek
    position = float("-inf")    # pts of the last decoded frame
    chosen, pending = None, None  # last frame <= the previous target; a decoded frame past it
    at_start = False
    for i in order:
        tick = ticks[i]
        key = keys[max(bisect.bisect_right(keys, tick) - 1, 0)]
        back = 0
        while True:
            if frames is None or key > position or back > 0:
                seek_to = max(min(key, tick - int(back / stream.time_base)), start)
                container.seek(seek_to, stream=stream, backward=True, any_frame=False)
                counters["seeks"] += 1
                frames = container.decode(stream)
                position, chosen, pending = float("-inf"), None, None
                at_start = seek_to == start
            while True:
                frame = pending if pending is not None else next(frames, None)
                if frame is not pending:
                    counters["decoded"] += 1 if frame is not None else 0
                pending = None
                if frame is None:
                    break  # the end: `chosen` is the last frame
                if frame.pts is None:
                    continue
                position = max(position, frame.pts)
                if frame.pts > tick:
                    pending = frame
                    break
                chosen = frame
            if chosen is not None:
                answer = chosen
                break
            if at_start:  # the target precedes the first frame
                if pending is None:
                    raise RuntimeError(f"{path}: no frame decodes")
                answer = pending
                break
            back = max(1.0, 2 * back)  # the seek landed past the target: go further back
        converter.convert(answer)
        answers[i] = answer.pts
    container.close()
    return answers


MODES = {"seek_every": sample_seek_every, "seek_when_needed": sample_seek_when_needed}


def main():
    job_path, out_path = sys.argv[1], sys.argv[2]
    with open(job_path) as f:
        job = json.load(f)
    out = {"pyav_version": av.__version__, "modes": {}}
    for mode in job["modes"]:
        best = None
        for _ in range(max(1, job.get("repeat", 1))):
            counters = {"seeks": 0, "decoded": 0}
            results, converters = [], []
            thumb_seconds = 0.0
            begin = time.perf_counter()
            for entry in job["files"]:
                converter = Converter(job["width"], job["height"], mode == "seek_every" and "thumbs" in entry)
                results.append(MODES[mode](entry["path"], entry["target_ticks"], converter, counters))
                converters.append(converter)
                thumb_seconds += converter.thumb_seconds
            seconds = time.perf_counter() - begin - thumb_seconds
            if best is None or seconds < best["seconds"]:
                best = {"seconds": seconds, "pts": results, **counters}
                for entry, converter in zip(job["files"], converters):
                    if converter.want_thumbs:
                        np.asarray(converter.thumbs, dtype=np.float32).tofile(entry["thumbs"])
        out["modes"][mode] = best
    with open(out_path, "w") as f:
        json.dump(out, f)
    sys.stdout.flush()
    os._exit(0)  # belt and braces against the exit hang above


if __name__ == "__main__":
    main()
