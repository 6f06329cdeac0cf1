"""How good are the poses the tracker shows? For every labelled person on every N-th frame of the
synthetic val videos, the best OKS among the poses ``Tracker.update`` returned (0 when none), and
for those shown with OKS >= 0.3 the left/right figures of ``benchmarks/frame_ap.py`` (median
predicted / true left-right distance, share of pairs in the right order).

    python benchmarks/shown_poses.py weights/pavenet-t.onnx [--videos 8] [--frames 100] [--every 10]
                                     [--split val]

``frame_ap.py`` scores single frames without tracks; this script scores what a user sees, with
the track queries carrying each person from frame to frame.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.frame_ap import side_agreement
from pavenet.layouts import get_layout
from pavenet.oks import oks_matrix
from pavenet.tracker import Tracker
from training.evaluation.track_eval import iter_videos

PAIRS = ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="an exported model (.onnx) or a checkpoint (.pt)")
    p.add_argument("--videos", type=int, default=8, help="synthetic videos (default 8)")
    p.add_argument("--frames", type=int, default=100, help="frames per video (default 100)")
    p.add_argument("--every", type=int, default=10, help="score every N-th frame (default 10)")
    p.add_argument("--split", default="val", help="synthetic split (default val)")
    args = p.parse_args()
    load = Tracker.from_onnx if args.weights.endswith(".onnx") else Tracker.from_checkpoint
    tracker = load(args.weights, device="cpu")
    best, sides = [], []
    for video in iter_videos("synthetic:test", args.videos, args.frames, split=args.split):
        layout = get_layout(video.layout)
        sigmas = np.asarray(layout.sigmas)
        tracker.reset()
        for t, frame in enumerate(video.frames):
            poses = tracker.update(video.load(t))
            if t % args.every or not frame.num_people:
                continue
            if not len(poses.track_ids):
                best += [0.0] * frame.num_people
                continue
            vis = frame.keypoints[..., 2] > 0
            b = frame.boxes
            area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1)
            oks = oks_matrix(poses.keypoints, frame.keypoints[..., :2], sigmas, vis, area=area)  # [n, G]
            for g in range(frame.num_people):
                q = oks[:, g].argmax()
                best.append(float(oks[q, g]))
                if oks[q, g] >= 0.3:
                    sides.append(side_agreement(poses.keypoints[q], frame.keypoints[g, :, :2], vis[g], layout))
    best = np.array(best)
    print(f"{args.weights}: {len(best)} labelled people ({args.split}, every {args.every}th frame), best shown pose: "
          f"mean OKS {best.mean():.3f}, share >= 0.5 {np.mean(best >= 0.5):.3f}, >= 0.75 {np.mean(best >= 0.75):.3f}")
    if sides:
        s = np.stack(sides)
        cells = []
        for i in range(s.shape[1]):
            m = s[:, i, 0] > 0
            if m.any():
                name = PAIRS[i] if i < len(PAIRS) else f"pair {i}"
                cells.append(f"{name} {np.median(s[m, i, 1]):.2f}/{s[m, i, 2].mean():.2f}")
        print("  left/right pairs, predicted/true distance (median) / direction agrees: " + ", ".join(cells))


if __name__ == "__main__":
    main()
