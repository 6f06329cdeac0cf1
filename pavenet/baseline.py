"""Tracking-by-detection baseline on the same model (torch-free).

The model runs with no track queries, so every frame is a fresh set of detections; identities come
from associating those detections with the tracks of the previous frames, as ByteTrack/SORT-style
pose trackers do:

- each track's pose is predicted one frame ahead with a constant velocity (last displacement);
- detections scoring >= ``new_track_thr`` are assigned to tracks by the Hungarian algorithm
  (``lap``) on 1 - OKS between detection and prediction, pairs with OKS < ``revive_oks`` not allowed;
- a matched track takes the detection's pose; an unmatched track is lost and retired after
  ``max_lost`` frames (the same rule as :class:`pavenet.Tracker`);
- an unmatched detection starts a new ID unless it duplicates an active track (OKS >= ``duplicate_oks``, or pose-box
  IoU >= ``duplicate_iou``), the same rule as PAVENet's.

It measures what query propagation adds over detection + association with everything else equal
(weights, thresholds, preprocessing, output format): ``pavenet-eval --tracker baseline``.
"""

from __future__ import annotations

import lap
import numpy as np

from pavenet.oks import oks_matrix
from pavenet.tracker import Tracker, _Track


class BaselineTracker(Tracker):
    """Same interface as :class:`Tracker` (``from_onnx``, ``update``, ``reset``, ``provider``)."""

    def reset(self) -> None:
        super().reset()
        self._velocity: dict[int, np.ndarray] = {}

    def _track_inputs(self) -> list[_Track]:
        return []  # detection only: no track queries

    def _associate(self, scores, kps, kscores, hidden) -> None:
        th = self.thresholds
        dets = [i for i in np.argsort(-scores) if scores[i] >= th.new_track_thr]
        matched_tracks: set[int] = set()
        unmatched = list(range(len(dets)))
        if dets and self._tracks:
            predicted = np.stack([t.keypoints + self._velocity.get(t.id, 0.0) * (t.lost + 1) for t in self._tracks])
            sim = oks_matrix(kps[dets], predicted, self.sigmas)  # [D, T]
            cost = 1.0 - sim
            _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - th.revive_oks + 1e-9)
            unmatched = []
            for d, t in enumerate(rows):
                if t < 0:
                    unmatched.append(d)
                    continue
                i, track = dets[d], self._tracks[t]
                self._velocity[track.id] = (kps[i] - track.keypoints) / (track.lost + 1)
                track.keypoints, track.keypoint_scores, track.hidden = kps[i], kscores[i], hidden[i]
                track.score, track.lost = float(scores[i]), 0
                matched_tracks.add(track.id)
        kept = []
        for track in self._tracks:
            if track.id not in matched_tracks:
                track.lost += 1
            if track.lost <= th.max_lost:
                kept.append(track)
            else:
                self._velocity.pop(track.id, None)
        self._tracks = kept
        for d in unmatched:
            i = dets[d]
            active = [t for t in self._tracks if t.lost == 0]
            if active and self._duplicates(kps[i], np.stack([t.keypoints for t in active])):
                continue
            self._tracks.append(_Track(self._next_id, hidden[i], kps[i], float(scores[i]), kscores[i]))
            self._next_id += 1
