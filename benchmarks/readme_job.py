"""How well the README's main-job video is tracked: per person, the frames where they are fully
visible and how many of those have a tracked pose within OKS 0.5 of them, and under which IDs.

    python benchmarks/readme_job.py [--weights weights/pavenet-t.onnx] [--save-frames DIR] [--timeline]

The video is the main job's (crossing suite, test split, seed 7, clip 0, 150 frames), generated
in memory. The issue's target: every person tracked in >= 90 % of the frames where they are fully
in view (all 17 keypoints labelled inside the frame), one ID each.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from pavenet.draw import annotate
from pavenet.layouts import get_layout
from pavenet.oks import oks_matrix
from pavenet.synth import generate_clip, suite_config
from pavenet.tracker import Tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="weights/pavenet-t.onnx", help="ONNX export (default: shipped)")
    parser.add_argument("--save-frames", default=None, help="write frames 10, 50, 90, 130 with poses here")
    parser.add_argument("--timeline", action="store_true",
                        help="also print each person's runs of frames under one ID ('-': in view, not tracked)")
    args = parser.parse_args()
    clip = generate_clip(suite_config("crossing"), "test", 7, 0, 150)
    tracker = Tracker.from_onnx(args.weights)
    sigmas = np.asarray(get_layout("coco17").sigmas)
    full: Counter = Counter()
    hit: Counter = Counter()
    ids: dict[int, Counter] = {}
    seen: dict[int, list[tuple[int, str]]] = {}  # person -> [(frame, ID or "-")] where fully visible
    for t, frame in enumerate(clip.frames):
        poses = tracker.update(frame.image)
        if args.save_frames and t in (10, 50, 90, 130):
            Path(args.save_frames).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(Path(args.save_frames) / f"frame{t:03d}.png"), annotate(frame.image.copy(), poses))
        vis = frame.keypoints[..., 2]
        boxes = frame.boxes
        area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1.0)
        sim = oks_matrix(poses.keypoints, frame.keypoints[..., :2], sigmas, vis > 0, area) if len(poses) else None
        for g, tid in enumerate(frame.track_ids):
            if not (vis[g] > 0).all():  # all 17 keypoints inside the frame (self-occlusion allowed)
                continue
            full[int(tid)] += 1
            label = "-"
            if sim is not None and sim[:, g].max() >= 0.5:
                hit[int(tid)] += 1
                label = str(int(poses.track_ids[sim[:, g].argmax()]))
                ids.setdefault(int(tid), Counter())[int(label)] += 1
            seen.setdefault(int(tid), []).append((t, label))
    for tid in sorted(full):
        print(f"person {tid}: fully visible in {full[tid]} frames, tracked within OKS 0.5 in {hit[tid]} "
              f"({hit[tid] / full[tid]:.0%}), IDs {dict(ids.get(tid, {}))}")
        if args.timeline:
            print("  by frame: " + ", ".join(f"{label} {a}-{b}" for label, a, b in _runs(seen[tid])))
    total_full, total_hit = sum(full.values()), sum(hit.values())
    print(f"all: {total_hit}/{total_full} fully visible person-frames tracked within OKS 0.5 "
          f"({total_hit / max(total_full, 1):.0%}); target >= 90 % per person, one ID each")


def _runs(seen: list[tuple[int, str]]) -> list[tuple[str, int, int]]:
    """(frame, label) in frame order -> [(label, first frame, last frame)] of consecutive equal labels."""
    runs: list[tuple[str, int, int]] = []
    for t, label in seen:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1], t)
        else:
            runs.append((label, t, t))
    return runs


if __name__ == "__main__":
    main()
