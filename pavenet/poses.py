"""The tracker's per-frame result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pavenet.draw import draw_poses
from pavenet.layouts import COCO17, KeypointLayout


@dataclass
class Poses:
    """People found in one frame, row-aligned.

    Attributes:
        track_ids: [n] int64, stable within a stream, never reused.
        keypoints: [n, K, 2] float32, pixels of the input frame.
        keypoint_scores: [n, K] float32 in [0, 1].
        scores: [n] float32 pose scores: the person score times the mean keypoint score.
        boxes: [n, 4] float32 x1, y1, x2, y2 around the confident keypoints.
        layout: what the K slots mean.
        keypoint_thr: the keypoint score below which a joint is not drawn by default (the
            tracker sets its model's tuned ``keypoint_thr``).
    """

    track_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    layout: KeypointLayout = COCO17
    keypoint_thr: float = 0.3

    def __len__(self) -> int:
        return len(self.track_ids)

    @staticmethod
    def empty(layout: KeypointLayout = COCO17, keypoint_thr: float = 0.3) -> Poses:
        k = layout.num_keypoints
        return Poses(np.zeros(0, np.int64), np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32),
                     np.zeros(0, np.float32), np.zeros((0, 4), np.float32), layout, keypoint_thr)

    def to_dict(self) -> dict:
        """JSON-serialisable: one entry per person with keypoints as [x, y, score] triples."""
        people = []
        for i in range(len(self)):
            kp = np.concatenate([self.keypoints[i], self.keypoint_scores[i][:, None]], 1)
            people.append({"track_id": int(self.track_ids[i]), "score": round(float(self.scores[i]), 4),
                           "box": [round(float(v), 2) for v in self.boxes[i]],
                           "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                                         for x, y, s in kp]})
        return {"people": people}

    def draw(self, frame: np.ndarray, keypoint_thr: float | None = None, boxes: bool = False) -> np.ndarray:
        """A copy of ``frame`` (BGR) with skeletons and IDs coloured per track; joints scoring below
        ``keypoint_thr`` (default: :attr:`keypoint_thr`, the model's tuned one) are not drawn; a person
        with none above it is marked by a thin box around its keypoints and its ID."""
        thr = self.keypoint_thr if keypoint_thr is None else keypoint_thr
        return draw_poses(frame, self.keypoints, self.keypoint_scores, self.track_ids, self.layout, thr,
                          self.boxes if boxes else None)


def boxes_from_keypoints(keypoints: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """[n, K, 2], [n, K] -> [n, 4] boxes around keypoints scoring >= thr (all when none), 10 % margin."""
    out = np.zeros((len(keypoints), 4), np.float32)
    for i, (kp, s) in enumerate(zip(keypoints, scores)):
        pts = kp[s >= thr] if (s >= thr).any() else kp
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.1 * (hi - lo) + 2
        out[i] = [*(lo - pad), *(hi + pad)]
    return out
