"""Drawing poses with stable per-identity colours."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from pavenet.layouts import KeypointLayout, get_layout

_GOLDEN = 0.618033988749895


def id_color(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour that is the same for a track ID in every frame and every run."""
    hue = int(((track_id * _GOLDEN) % 1.0) * 180)
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_poses(
    image: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray | None = None,
    track_ids: np.ndarray | None = None,
    layout: KeypointLayout | str = "coco17",
    keypoint_thr: float = 0.3,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Draw skeletons (and optional boxes and ID labels) on a copy of ``image``.

    Args:
        image: [H, W, 3] uint8 BGR frame.
        keypoints: [n, K, 2] pixel coordinates of ``image``.
        keypoint_scores: [n, K]; keypoints below ``keypoint_thr`` are not drawn (a person with none
            above it gets a thin box around all its keypoints and its ID label). ``None``: all.
        track_ids: [n] int; limbs take the ID's colour. ``None``: the row index's colour.
        layout: the keypoint layout of the K slots.
        boxes: [n, 4] x1, y1, x2, y2, drawn thin in the ID colour when given.

    Returns:
        The annotated [H, W, 3] uint8 BGR copy.
    """
    layout = get_layout(layout)
    out = image.copy()
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, layout.num_keypoints, 2)
    n = len(keypoints)
    scores = np.ones(keypoints.shape[:2]) if keypoint_scores is None else np.asarray(keypoint_scores)
    ids = np.arange(n) if track_ids is None else np.asarray(track_ids)
    scale = max(image.shape[0], image.shape[1])
    thick = max(1, round(scale / 320))
    radius = max(2, round(scale / 200))
    for i in range(n):
        color = id_color(int(ids[i]))
        ok = scores[i] >= keypoint_thr
        pts = np.round(keypoints[i] * 16).astype(np.int64)  # 4 fractional bits for cv2 shift=4
        for a, b in layout.skeleton:
            if ok[a] and ok[b]:
                cv2.line(out, tuple(pts[a]), tuple(pts[b]), color, thick, cv2.LINE_AA, shift=4)
        for k in np.flatnonzero(ok):
            cv2.circle(out, tuple(pts[k]), radius * 16, layout.colors[k], -1, cv2.LINE_AA, shift=4)
        if boxes is not None:
            x1, y1, x2, y2 = np.round(boxes[i]).astype(int)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, 1)
        if ok.any():
            anchor = keypoints[i][ok]
        else:  # tracked, but every joint is unsure (small or faint people): mark where, with the ID
            anchor = keypoints[i]
            if boxes is None:
                (x1, y1), (x2, y2) = np.round(anchor.min(0)).astype(int), np.round(anchor.max(0)).astype(int)
                cv2.rectangle(out, (x1, y1), (x2, y2), color, 1)
        x, y = int(anchor[:, 0].min()), int(anchor[:, 1].min()) - 4
        _label(out, f"{int(ids[i])}", (x, max(y, 10)), color, scale)
    return out


def _label(image: np.ndarray, text: str, org: tuple[int, int], color, scale: int) -> None:
    font_scale = max(0.35, scale / 900)
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    x, y = org
    cv2.rectangle(image, (x - 1, y - h - 2), (x + w + 1, y + 2), color, -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)


class Trails:
    """Each person's recent centres (track ID -> the last ``length`` points) for :func:`annotate`.

    A person not seen for ``length`` frames is forgotten, so a stream that runs for days keeps a
    bounded history (and departed people leave no trail behind on screen).
    """

    def __init__(self, length: int = 30):
        self.length = length
        self.paths: dict[int, deque] = {}
        self._last_seen: dict[int, int] = {}
        self._frame = 0

    def update(self, poses, thr: float = 0.3) -> None:
        """Append the centre of every person in ``poses`` and forget people gone for ``length`` frames."""
        self._frame += 1
        for tid, kp, ks in zip(poses.track_ids, poses.keypoints, poses.keypoint_scores):
            pts = kp[ks >= thr] if (ks >= thr).any() else kp
            tid = int(tid)
            self.paths.setdefault(tid, deque(maxlen=self.length)).append(pts.mean(0))
            self._last_seen[tid] = self._frame
        for tid in [t for t, seen in self._last_seen.items() if self._frame - seen >= self.length]:
            del self.paths[tid], self._last_seen[tid]

    def __len__(self) -> int:
        return len(self.paths)


def draw_trails(image: np.ndarray, poses, trails: Trails, thr: float = 0.3) -> np.ndarray:
    """Add ``poses`` to ``trails`` and draw every remembered path on ``image`` in place."""
    trails.update(poses, thr)
    for tid, path in trails.paths.items():
        if len(path) > 1:
            line = np.round(np.array(path) * 16).astype(np.int32)
            cv2.polylines(image, [line], False, id_color(tid), 2, cv2.LINE_AA, shift=4)
    return image


def new_trails(length: int = 30) -> Trails:
    """Empty trail history for :func:`annotate` (pass the same one every frame of a stream)."""
    return Trails(length)


def people_count(n: int) -> str:
    """``1 person``, ``3 people``."""
    return f"{n} person" if n == 1 else f"{n} people"


def annotate(frame: np.ndarray, poses, keypoint_thr: float | None = None, trails: Trails | None = None,
             fps: float | None = None) -> np.ndarray:
    """The annotated frame every front end shows: skeletons and IDs, optional trails (pass the same
    :func:`new_trails` dict every frame) and an FPS / people-count overlay. ``frame`` BGR, not modified;
    ``keypoint_thr`` defaults to the one ``poses`` carries (the model's tuned one)."""
    keypoint_thr = poses.keypoint_thr if keypoint_thr is None else keypoint_thr
    out = poses.draw(frame, keypoint_thr)
    if trails is not None:
        out = draw_trails(out, poses, trails, keypoint_thr)
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} FPS  {people_count(len(poses))}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 2, cv2.LINE_AA)
    return out
