"""The streaming tracker: identities over time on top of one model step per frame (torch-free).

Identity lifecycle (thresholds in :class:`pavenet.contract.TrackerThresholds`):
- a detect query scoring >= ``new_track_thr`` starts a track with a new ID, unless its pose
  duplicates an active track (OKS >= ``duplicate_oks``, or pose-box IoU >= ``duplicate_iou``) or
  revives a lost one (OKS >= ``revive_oks`` against the lost track's last pose: it takes that
  track's ID back);
- a new track that scored below ``keep_thr`` is *tentative*: it is shown only once its track
  query scores >= ``keep_thr`` in a later frame, and retired unseen if it does not at once (a
  one-frame false or duplicate detection never flickers on screen);
- each track's pose is the keypoint-score-weighted mean of its track query's pose and the pose
  of the detect query that found the same person in the same step (median joint distance below
  ``fuse_dist`` of the pose's size; one detect row per track, by ``lap``, none that is nearly as
  near another track): two independent estimates of one person, closer to the truth than
  either, and the mean is what is fed back; when the two lie within ``reseat_dist`` of each
  other, the track also goes on with the detect query's hidden state (a track query that
  drifts towards a neighbour is re-anchored on what the image shows now);
- a track stays active while its track query scores >= ``keep_thr``; when two active tracks
  converge on one person (OKS >= ``duplicate_oks`` both ways, or, for a track born at most
  ``merge_age`` frames ago, median joint distance below ``merge_dist`` of the smaller pose's
  size) the newer one is retired, the older ID going on with the better-scoring of the two;
- below that it is *lost*: it is kept and still fed back to the model for ``max_lost`` frames,
  so a person who is occluded or steps out briefly comes back with the same ID; then retired.
IDs are never reused within a stream. ``reset()`` starts a new stream. A shown pose's score is
its query's person score times its mean keypoint confidence: a pose-quality score, which ranks
poses by how right they are better than the person score alone (val OKS-AP +0.009..+0.014).

    tracker = Tracker.from_onnx("weights/pavenet-t.onnx")
    for frame in frames:                      # [H, W, 3] BGR uint8 (grey, BGRA, float also accepted)
        poses = tracker.update(frame)         # Poses: track_ids, keypoints, keypoint_scores, boxes
        annotated = poses.draw(frame)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from pavenet.backends import OnnxBackend, TorchBackend
from pavenet.contract import TrackerThresholds
from pavenet.errors import PavenetError
from pavenet.oks import oks_matrix, pose_box_iou
from pavenet.poses import Poses, boxes_from_keypoints
from pavenet.preprocess import letterbox, to_bgr, to_frame_pixels
from pavenet.smoothing import OneEuro

HISTORY = 10  # confident poses remembered per track (the pose a held track keeps is one of them)


@dataclass
class _Track:
    id: int
    hidden: np.ndarray  # [D]
    keypoints: np.ndarray  # [K, 2] normalised, latest prediction (fed back)
    score: float
    keypoint_scores: np.ndarray  # [K]
    lost: int = 0
    confirmed: bool = True  # False: born below keep_thr and not yet seen again (not shown)
    age: int = 0  # frames since the track was born
    held: bool = False  # given way to another track on the same person: not fed back (``hold_merged``)
    history: list = field(default_factory=list, repr=False)  # its last HISTORY confident poses, oldest first
    smoother: OneEuro | None = field(default=None, repr=False)


class Tracker:
    """Multi-person pose tracker. See the module docstring for the lifecycle."""

    def __init__(self, backend, thresholds: TrackerThresholds | None = None, smooth: bool = False,
                 fps: float = 30.0):
        self.backend = backend
        self.info = backend.info
        self.layout = self.info.layout
        self.thresholds = thresholds or self.info.thresholds
        self.smooth, self.fps = smooth, fps
        self.sigmas = np.asarray(self.layout.sigmas)
        self.reset()

    @classmethod
    def from_onnx(cls, path, device: str = "auto", smooth: bool = False, **thresholds) -> Tracker:
        """Track with an exported model in ONNX Runtime (no torch needed)."""
        backend = OnnxBackend(path, device)
        return cls(backend, backend.info.thresholds.override(**thresholds), smooth)

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", smooth: bool = False, cuda_graphs: bool = True,
                        **thresholds) -> Tracker:
        """Track with a training checkpoint in PyTorch (same logic as the ONNX path); on CUDA the step
        is replayed as CUDA graphs unless ``cuda_graphs`` is False."""
        backend = TorchBackend(path, device, cuda_graphs)
        return cls(backend, backend.info.thresholds.override(**thresholds), smooth)

    @property
    def provider(self) -> str:
        """Where the model runs: ``CPUExecutionProvider``, ``CUDAExecutionProvider``, ``torch-cpu`` ..."""
        return self.backend.provider

    def reset(self) -> None:
        """Forget every track and the previous frame (the next frame starts a new stream)."""
        cfg = self.info.config
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._prev_tokens = np.zeros((1, self.info.num_tokens, cfg.d_model), np.float32)
        self._prev_valid = np.zeros(1, np.float32)
        self._frame_size: tuple[int, int] | None = None
        self._frame_index = 0

    def update(self, frame: np.ndarray) -> Poses:
        """Track one frame; returns the visible people with their IDs."""
        bgr = to_bgr(frame)
        size = (bgr.shape[1], bgr.shape[0])
        if self._frame_size is not None and size != self._frame_size:
            raise PavenetError(f"frame size changed from {self._frame_size} to {size} mid-stream; call reset() first")
        self._frame_size = size
        rgb, matrix = letterbox(bgr, self.info.input_size)
        out = self._run(rgb)
        self._prev_tokens, self._prev_valid = out["tokens"], np.ones(1, np.float32)
        self._associate(*(out[k][0] for k in ("scores", "keypoints", "keypoint_scores", "hidden")))
        self._frame_index += 1
        return self._poses(matrix)

    def _associate(self, scores, kps, kscores, hidden) -> None:
        """Update identities from one step's rows: [M] scores, [M, K, 2] keypoints, [M, K], [M, D];
        rows 0..N-1 answer the N tracks fed in."""
        th = self.thresholds
        n = len(self._track_inputs())
        pairs = track_detect_pairs(kps, n, th.fuse_dist, th.pair_ratio)
        kps, kscores = fuse_track_poses(kps, kscores, n, th.fuse_dist, pairs)
        reseat = [(i, j) for i, j, d in pairs if d < th.reseat_dist]
        if reseat:  # the track goes on with the detect query that found its person this step
            hidden = hidden.copy()
            for i, j in reseat:
                hidden[i] = hidden[j]
        self._update_tracks(scores[:n], kps[:n], kscores[:n], hidden[:n])
        self._add_detections(scores[n:], kps[n:], kscores[n:], hidden[n:])

    def _track_inputs(self) -> list[_Track]:
        """The tracks whose queries are fed to the next step (all but held ones), in list order."""
        return [t for t in self._tracks if not t.held]

    def _run(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.info.config
        k = cfg.num_keypoints
        tracks = self._track_inputs()
        if tracks:
            tq = np.stack([t.hidden for t in tracks])[None].astype(np.float32)
            tk = np.stack([t.keypoints for t in tracks])[None].astype(np.float32)
        else:
            tq, tk = np.zeros((1, 0, cfg.d_model), np.float32), np.zeros((1, 0, k, 2), np.float32)
        return self.backend.step({"image": rgb[None], "track_queries": tq, "track_keypoints": tk,
                                  "prev_tokens": self._prev_tokens, "prev_valid": self._prev_valid})

    def _update_tracks(self, scores, kps, kscores, hidden) -> None:
        th = self.thresholds
        rows = iter(zip(scores, kps, kscores, hidden))  # one per fed track, in list order
        kept = []
        for track in self._tracks:
            track.age += 1
            if track.held:
                track.lost += 1  # not fed: waits for a detection to revive it
            else:
                s, kp, ks, h = next(rows)
                track.hidden = h
                if s >= th.keep_thr:
                    track.keypoints, track.keypoint_scores, track.score, track.lost = kp, ks, float(s), 0
                    track.confirmed = True
                    _remember(track)
                elif not track.confirmed:
                    continue  # a tentative track not seen again is retired unseen
                else:
                    track.lost += 1  # keep its last confident pose as the reference it is fed back with
            if track.lost <= th.max_lost:
                kept.append(track)
        self._tracks = kept
        self._merge_duplicates()

    def _merge_duplicates(self) -> None:
        """Two active tracks on one person (OKS >= ``duplicate_oks`` both ways, or median joint
        distance < ``merge_dist`` of the smaller pose's size while the newer is at most
        ``merge_age`` frames old): the older ID keeps it, the newer track is retired (it would
        otherwise show the person twice); when the newer one scored higher, the older ID takes
        its query and pose."""
        th = self.thresholds
        active = sorted((t for t in self._tracks if t.lost == 0), key=lambda t: t.id)
        if len(active) < 2:
            return
        kps = np.stack([t.keypoints for t in active])  # [A, K, 2]
        sim = oks_matrix(kps, kps, self.sigmas)
        same = (sim >= th.duplicate_oks) & (sim.T >= th.duplicate_oks)
        if th.merge_dist > 0:
            size = pose_size(kps)
            dist = median_joint_distance(kps, kps)  # [A, A]
            young = np.array([t.age <= th.merge_age for t in active])  # [A]
            near = dist < th.merge_dist * np.minimum(size[:, None], size[None])
            same |= near & (young[:, None] | young[None])
        retired: set[int] = set()
        gone: set[int] = set()  # retired or held
        for j in range(len(active)):
            older = [i for i in range(j) if same[j, i] and active[i].id not in gone]
            if older:
                gone.add(active[j].id)
                keep, dup = active[older[0]], active[j]
                hold = th.hold_merged and min(keep.age, dup.age) > th.merge_age
                if dup.score > keep.score:  # the older ID carries on with the better-scoring query
                    keep.hidden, keep.keypoints, keep.keypoint_scores, keep.score = (
                        dup.hidden, dup.keypoints, dup.keypoint_scores, dup.score)
                if hold:
                    self._hold(dup, keep.keypoints)
                else:
                    retired.add(dup.id)
        if retired:
            self._tracks = [t for t in self._tracks if t.id not in retired]

    def _hold(self, track: _Track, other: np.ndarray) -> None:
        """``track`` gave way to a track now showing pose ``other`` [K, 2]: not fed or shown from now
        on, it keeps its latest remembered pose that is apart from ``other`` (a duplicate by
        neither OKS nor joint distance), so the person it followed can be recognised when seen again."""
        th = self.thresholds
        track.held, track.lost = True, max(track.lost, 1)
        for pose in reversed(track.history):
            near = median_joint_distance(pose[None], other[None])[0, 0] < th.merge_dist * min(
                pose_size(pose[None])[0], pose_size(other[None])[0])
            if not near and oks_matrix(pose[None], other[None], self.sigmas)[0, 0] < th.duplicate_oks:
                track.keypoints = pose
                return
        if track.history:
            track.keypoints = track.history[0]

    def _add_detections(self, scores, kps, kscores, hidden) -> None:
        th = self.thresholds
        order = [i for i in np.argsort(-scores) if scores[i] >= th.new_track_thr]
        for i in order:
            active = [t for t in self._tracks if t.lost == 0]
            if active and self._duplicates(kps[i], np.stack([t.keypoints for t in active])):
                continue  # the same person as an active track (or a detection accepted just before)
            lost = [t for t in self._tracks if t.lost > 0]
            sims = oks_matrix(kps[i][None], np.stack([t.keypoints for t in lost]), self.sigmas)[0] if lost else []
            if len(sims) and sims.max() >= th.revive_oks:
                track = lost[int(np.argmax(sims))]
                track.hidden, track.keypoints, track.keypoint_scores = hidden[i], kps[i], kscores[i]
                track.score, track.lost, track.held = float(scores[i]), 0, False
                _remember(track)
                continue
            self._tracks.append(_Track(self._next_id, hidden[i], kps[i], float(scores[i]), kscores[i],
                                       confirmed=scores[i] >= th.keep_thr, history=[kps[i]]))
            self._next_id += 1

    def _duplicates(self, pose: np.ndarray, active: np.ndarray) -> bool:
        """Is ``pose`` [K, 2] one of the ``active`` [A, K, 2] poses again (OKS, or box IoU)?"""
        th = self.thresholds
        if oks_matrix(pose[None], active, self.sigmas).max() >= th.duplicate_oks:
            return True
        return th.duplicate_iou < 1.0 and pose_box_iou(pose, active).max() >= th.duplicate_iou

    def _poses(self, matrix: np.ndarray) -> Poses:
        visible = [t for t in self._tracks if t.lost == 0 and t.confirmed]
        if not visible:
            return Poses.empty(self.layout, self.thresholds.keypoint_thr)
        kps = np.stack([to_frame_pixels(t.keypoints, self.info.input_size, matrix) for t in visible])
        if self.smooth:
            stamp = self._frame_index / self.fps
            for j, t in enumerate(visible):
                t.smoother = t.smoother or OneEuro()
                kps[j] = t.smoother(kps[j], stamp)
        kscores = np.stack([t.keypoint_scores for t in visible]).astype(np.float32)
        return Poses(
            track_ids=np.array([t.id for t in visible], np.int64),
            keypoints=kps.astype(np.float32),
            keypoint_scores=kscores,
            scores=np.array([t.score for t in visible], np.float32) * kscores.mean(1),
            boxes=boxes_from_keypoints(kps, kscores, self.thresholds.keypoint_thr),
            layout=self.layout,
            keypoint_thr=self.thresholds.keypoint_thr,
        )

    @property
    def active_tracks(self) -> int:
        """Tracks shown this frame (tentative ones are not)."""
        return sum(t.lost == 0 and t.confirmed for t in self._tracks)


def _remember(track: _Track) -> None:
    """Append the track's current pose to its history (the last ``HISTORY`` kept)."""
    track.history.append(track.keypoints)
    del track.history[:-HISTORY]


def pose_size(kps: np.ndarray) -> np.ndarray:
    """[P] the longer side of each pose's keypoint box; kps [P, K, 2]."""
    return np.maximum(np.ptp(kps, axis=1).max(-1), 1e-6)


def median_joint_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] median over joints of the distance between poses a [A, K, 2] and b [B, K, 2]."""
    return np.median(np.linalg.norm(a[:, None] - b[None], axis=-1), -1)


def track_detect_pairs(kps: np.ndarray, n: int, max_dist: float, ratio: float = 2.0
                       ) -> list[tuple[int, int, float]]:
    """Which detect row shows each track's person in one step.

    Args:
        kps: [M, K, 2] one step's poses, rows 0..n-1 answering the tracks.
        max_dist: a detect row is the same person when the median distance of its joints to the
            track row's is below this share of the track pose's size (longer side of its keypoint
            box); 0 = off.

    Returns:
        (track row i, detect row j (index into ``kps``, >= n), distance as a share of the pose's
        size) for each pair: each detect row joins at most one track (assignment on the distances
        with ``lap``), and none that is less than ``ratio`` times as far from another track
        (overlapping people: which one it shows is unclear; ``ratio`` 1 = the assignment alone).
    """
    m = len(kps)
    if max_dist <= 0 or n == 0 or m == n:
        return []
    dist = median_joint_distance(kps[:n], kps[n:]) / pose_size(kps[:n])[:, None]  # [n, M - n]
    _, rows, _ = lap.lapjv(dist, extend_cost=True, cost_limit=max_dist)
    pairs = []
    for i, j in enumerate(rows):
        if j < 0 or dist[i, j] >= max_dist:
            continue
        others = np.delete(dist[:, j], i)
        if len(others) and others.min() < ratio * dist[i, j]:
            continue
        pairs.append((i, n + int(j), float(dist[i, j])))
    return pairs


def fuse_track_poses(kps: np.ndarray, kscores: np.ndarray, n: int, max_dist: float,
                     pairs: list[tuple[int, int, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average each of the first ``n`` rows (track rows) with its detect row of the same person.

    Args:
        kps: [M, K, 2] one step's poses, rows 0..n-1 answering the tracks; kscores: [M, K].
        max_dist: see :func:`track_detect_pairs`; 0 = off.
        pairs: :func:`track_detect_pairs` of these rows, when the caller has them already.

    Returns:
        (keypoints, keypoint scores) [M, K, 2], [M, K]: track rows replaced by the per-joint
        mean of the two poses weighted by their keypoint scores, with the higher of the two scores.
    """
    pairs = track_detect_pairs(kps, n, max_dist) if pairs is None else pairs
    if not pairs:
        return kps, kscores
    kps, kscores = kps.copy(), kscores.copy()
    for i, j, _ in pairs:
        a, b = kscores[i], kscores[j]
        w = (a / np.maximum(a + b, 1e-9))[:, None]
        kps[i] = w * kps[i] + (1 - w) * kps[j]
        kscores[i] = np.maximum(a, b)
    return kps, kscores
