"""Frame by frame through the README main job's crossing: for each person, the shown pose nearest
them (OKS, ID) against the best raw row of the model step (OKS, score, track or detect query).

    python benchmarks/crossing_rows.py [--weights weights/pavenet-t.onnx] [--first 120] [--last 149]
                                       [--persons 0 3]

It tells the two ways a person can be lost apart: the model does not see them (no raw row near
them), or it does and the tracker shows a worse pose or another ID (a detect row near them scores
low because a track query already claims them, and the track's pose is what is shown).
"""

from __future__ import annotations

import argparse

import numpy as np

from pavenet.layouts import get_layout
from pavenet.oks import oks_matrix
from pavenet.preprocess import letterbox, to_bgr, to_frame_pixels
from pavenet.synth import generate_clip, suite_config
from pavenet.tracker import Tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="weights/pavenet-t.onnx", help="ONNX export (default: shipped)")
    parser.add_argument("--first", type=int, default=120, help="first frame printed (default 120)")
    parser.add_argument("--last", type=int, default=149, help="last frame printed (default 149)")
    parser.add_argument("--persons", type=int, nargs="+", default=[0, 3],
                        help="ground-truth person IDs to follow (default 0 3: the pair that crosses at ~130)")
    args = parser.parse_args()
    clip = generate_clip(suite_config("crossing"), "test", 7, 0, 150)  # the README main job's video
    tracker = Tracker.from_onnx(args.weights)
    sigmas = np.asarray(get_layout(clip.layout).sigmas)
    step, last = tracker.backend.step, {}

    def recording_step(feeds):
        last["out"], last["n"] = step(feeds), feeds["track_queries"].shape[1]
        return last["out"]

    tracker.backend.step = recording_step
    for t, frame in enumerate(clip.frames[:args.last + 1]):
        fed = [track.id for track in tracker._track_inputs()]
        poses = tracker.update(frame.image)
        if t < args.first:
            continue
        _, matrix = letterbox(to_bgr(frame.image), tracker.info.input_size)
        out, n = last["out"], last["n"]
        rows = np.stack([to_frame_pixels(k, tracker.info.input_size, matrix) for k in out["keypoints"][0]])
        scores = out["scores"][0]
        boxes, vis = frame.boxes, frame.keypoints[..., 2] > 0
        area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1.0)
        raw = oks_matrix(rows, frame.keypoints[..., :2], sigmas, vis, area)  # [rows, people]
        shown = oks_matrix(poses.keypoints, frame.keypoints[..., :2], sigmas, vis, area) if len(poses) else None
        line = [f"frame {t:3d}, tracks fed {fed}"]
        for g, pid in enumerate(frame.track_ids):
            if int(pid) not in args.persons:
                continue
            r = int(np.argmax(raw[:, g]))
            kind = f"track {fed[r]}" if r < n else "detect"
            near = [scores[j] for j in range(n, len(rows)) if raw[j, g] >= 0.5]
            show = (f"{shown[:, g].max():.2f} ID {poses.track_ids[shown[:, g].argmax()]}"
                    if shown is not None else "none")
            line.append(f"person {pid}: shown {show}; best row {raw[r, g]:.2f} ({kind}, score {scores[r]:.2f}); "
                        f"best detect score at OKS >= 0.5: {max(near, default=0):.2f}")
        print(" | ".join(line))


if __name__ == "__main__":
    main()
