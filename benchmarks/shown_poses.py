"""How good are the poses the tracker shows, and who does it miss? For every labelled person on
every N-th frame of the synthetic val videos: the best OKS among the poses ``Tracker.update``
returned (0 when none); for those shown with OKS >= 0.3 the left/right figures of
``benchmarks/frame_ap.py`` (median predicted / true left-right distance, share of pairs in the
right order); for those not shown within OKS 0.5, whether a raw row of that step (the model's
output before the tracker's thresholds) was within OKS 0.5, whether it was a track or a detect
row, and its score, next to the scores of rows far from everyone (OKS < 0.1: false positives),
so the cost of a lower ``new_track_thr`` can be read off.

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
from benchmarks.frame_ap import HEIGHTS, side_agreement
from pavenet.layouts import get_layout
from pavenet.oks import oks_matrix
from pavenet.preprocess import letterbox, to_frame_pixels
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
    step = {}
    run = tracker._run

    def recording_run(rgb):  # keep each step's raw rows and how many of them answer tracks
        step["tracks"] = len(tracker._track_inputs())
        step["out"] = run(rgb)
        return step["out"]

    tracker._run = recording_run
    best, sides, heights = [], [], []
    missed_row, missed_track, missed_score, far_scores, frames = 0, 0, [], [], 0
    for video in iter_videos("synthetic:test", args.videos, args.frames, split=args.split):
        layout = get_layout(video.layout)
        sigmas = np.asarray(layout.sigmas)
        tracker.reset()
        for t, frame in enumerate(video.frames):
            poses = tracker.update(video.load(t))
            if t % args.every or not frame.num_people:
                continue
            frames += 1
            vis = frame.keypoints[..., 2] > 0
            b = frame.boxes
            area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1)
            gt = frame.keypoints[..., :2]
            oks = oks_matrix(poses.keypoints, gt, sigmas, vis, area=area) if len(poses.track_ids) else None  # [n, G]
            image = video.load(t)
            _, meta = letterbox(image, tracker.info.input_size)
            raw = to_frame_pixels(step["out"]["keypoints"][0], tracker.info.input_size, meta)  # [M, K, 2]
            raw_oks = oks_matrix(raw, gt, sigmas, vis, area=area)  # [M, G]
            scores = step["out"]["scores"][0]
            far_scores += scores[raw_oks.max(1) < 0.1].tolist()
            for g in range(frame.num_people):
                q = oks[:, g].argmax() if oks is not None else 0
                shown = float(oks[q, g]) if oks is not None else 0.0
                best.append(shown)
                heights.append(b[g, 3] - b[g, 1])
                if shown >= 0.3:
                    sides.append(side_agreement(poses.keypoints[q], gt[g], vis[g], layout))
                good = np.flatnonzero(raw_oks[:, g] >= 0.5)
                if shown < 0.5 and len(good):
                    r = good[np.argmax(scores[good])]
                    missed_row += 1
                    missed_track += int(r < step["tracks"])
                    missed_score.append(float(scores[r]))
    best = np.array(best)
    print(f"{args.weights}: {len(best)} labelled people ({args.split}, every {args.every}th frame), best shown pose: "
          f"mean OKS {best.mean():.3f}, share >= 0.5 {np.mean(best >= 0.5):.3f}, >= 0.75 {np.mean(best >= 0.75):.3f}")
    missed = best < 0.5
    hs = np.array(heights)
    by_height = ", ".join(f"{lo}-{hi if hi < 10_000 else ''} px {np.mean(missed[(hs >= lo) & (hs < hi)]):.2f}"
                          for lo, hi in HEIGHTS if ((hs >= lo) & (hs < hi)).any())
    print(f"  not shown within OKS 0.5: {missed.mean():.2f} of people ({by_height}); a raw row within OKS 0.5 "
          f"existed for {missed_row} of {missed.sum()} ({missed_track} of them track rows)")
    if missed_score:
        ms, far = np.array(missed_score), np.array(far_scores)
        q10, q50, q90 = np.percentile(ms, [10, 50, 90])
        print(f"  their best such row's score: 10/50/90 % {q10:.2f} / {q50:.2f} / {q90:.2f}; at a score threshold of "
              + ", ".join(f"{thr}: {np.mean(ms >= thr):.2f} of them, {np.sum(far >= thr) / max(frames, 1):.2f} "
                          "far-from-everyone rows per frame" for thr in (0.2, 0.3, 0.4, 0.5)))
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
