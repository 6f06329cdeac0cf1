"""Track queries in training, handed from frame to frame the way the runtime hands them.

The runtime (:class:`pavenet.tracker.Tracker`) feeds every track back with the decoder's hidden
state of the last frame and, as its pose, the last **refined** pose it scored at least
``keep_thr`` with; a track below ``keep_thr`` is *lost*: it keeps its stale pose and is still
fed back for ``max_lost`` frames. Training does the same on clips of several frames, so the model
learns on old and lost track queries as it will meet them. What differs is only who becomes a
track: in training, the detect query matched to a person (TrackFormer, MOTR) when it scores at
least ``birth_thr`` (the runtime's ``new_track_thr``: a person whose detection scores lower stays
untracked and its detect query stays a positive, as at run time; 0 hands every matched person
over), and with probability ``fp`` per image an unmatched confident detect query (a false positive
that must learn to die); each track is dropped with probability ``drop`` per frame, so detect
queries keep learning to pick people up, and with probability ``reset`` a clip forgets all its
tracks before its gradient window, so detect queries also learn on frames without any track
query (every video starts that way).

Matching (``track_assignment``):
- ``bonus`` (the default): one Hungarian over all queries; the cost of a track query for
  the person it follows is lowered by ``track_bonus``.
- ``hard`` (TrackFormer, MOTR): a track query whose person is present is assigned to that
  person; Hungarian runs over the detect queries and the remaining people.

Diagnostics of the training log (docs/training-log.md) (``n_trk``, ``n_trk_pos``, ``n_det_pos``, ``trk_id_con``,
``trk_kpt_l1``, ``det_kpt_l1``) are summed per step, partly on the host (counts) and partly on
the device (keypoint errors), and turned into averages at log time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from training.objective.matcher import assign

BIG = 1e6  # cost of impossible pairs (padding rows)


@dataclass
class TrackBatch:
    """Track queries of a batch, padded to the largest count N.

    Attributes:
        queries: [B, N, D] detached hidden states.
        keypoints: [B, N, K, 2] the poses they are fed with (last confident refined pose).
        mask: [B, N] bool, False for padding (device).
        valid: [B, N] bool on the host, the same.
        follow: [B, N] int64 on the host: the identity each track follows (-1: a false positive).
        lost: [B, N] int64 on the host: frames since the track last scored >= keep_thr.
    """

    queries: torch.Tensor
    keypoints: torch.Tensor
    mask: torch.Tensor
    valid: np.ndarray
    follow: np.ndarray
    lost: np.ndarray

    @property
    def size(self) -> int:
        return self.queries.shape[1]

    @staticmethod
    def empty(b: int, d: int, k: int, device) -> TrackBatch:
        return TrackBatch(torch.zeros(b, 0, d, device=device), torch.zeros(b, 0, k, 2, device=device),
                          torch.zeros(b, 0, dtype=torch.bool, device=device), np.zeros((b, 0), bool),
                          np.zeros((b, 0), np.int64), np.zeros((b, 0), np.int64))


@dataclass(frozen=True)
class TrackRules:
    """How track queries are chosen and matched in training (see the module docstring)."""

    assignment: str = "bonus"
    bonus: float = -10.0
    keep_thr: float = 0.3
    max_lost: int = 15
    drop: float = 0.1
    fp: float = 0.1
    fp_thr: float = 0.1
    reset: float = 0.25
    birth_thr: float = 0.0
    fuse_dist: float = 0.0
    reseat_dist: float = 0.0


def match_image(cost: np.ndarray, follow: np.ndarray, valid: np.ndarray, ids: np.ndarray,
                rules: TrackRules) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's queries (N track queries first) to its G people.

    Args:
        cost: [N + Q, G] matching cost; follow/valid: [N] the tracks' identities and padding;
        ids: [G] the people's identities.

    Returns:
        (query indices, target indices), sorted by target.
    """
    n, g = len(follow), cost.shape[1]
    if g == 0 or cost.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cost = cost.copy()
    cost[:n][~valid] = BIG
    same = (follow[:, None] >= 0) & (follow[:, None] == ids[None, :]) & valid[:, None]  # [N, G]
    if rules.assignment == "bonus" or not same.any():
        cost[:n][same] += rules.bonus
        rows, cols = assign(cost)
    else:
        fixed_r, fixed_c = np.nonzero(same)
        free_c = np.setdiff1d(np.arange(g), fixed_c)
        r, c = assign(cost[n:][:, free_c])
        rows = np.concatenate([fixed_r, r + n]).astype(np.int64)
        cols = np.concatenate([fixed_c, free_c[c]]).astype(np.int64)
    keep = cost[rows, cols] < BIG / 2
    order = np.argsort(cols[keep])
    return rows[keep][order], cols[keep][order]


@dataclass
class Handover:
    """What one frame hands to the next, decided on the host for each image.

    ``rows[b]`` are query rows of this frame that become next frame's tracks, ``fresh[b]`` says
    which of them scored >= keep_thr (fed with their new pose) and which are lost (fed with their
    old one), with ``follow``/``lost`` their bookkeeping.
    """

    rows: list[list[int]] = field(default_factory=list)
    fresh: list[list[bool]] = field(default_factory=list)
    follow: list[list[int]] = field(default_factory=list)
    lost: list[list[int]] = field(default_factory=list)


def plan_handover(scores: np.ndarray, matches: list[tuple[np.ndarray, np.ndarray]], tracks: TrackBatch,
                  ids: np.ndarray, rules: TrackRules, rngs: list[np.random.Generator] | None,
                  reset: np.ndarray | None = None) -> Handover:
    """Decide next frame's tracks.

    Args:
        scores: [B, N + Q] last-layer person probabilities (host).
        matches: last-layer matches per image.
        tracks: this frame's track queries (rows 0..N-1).
        ids: [B, G] the people's identities (host, -1 padding).
        rngs: per-clip generators for drop / false positives (None: no augmentation, e.g. validation).
        reset: [B] bool, clips that forget all their tracks (the next frame starts a stream).
    """
    n = tracks.size
    plan = Handover()
    for b in range(scores.shape[0]):
        rows_m, cols_m = matches[b]
        matched = {int(r): int(ids[b, c]) for r, c in zip(rows_m, cols_m)}
        rng = rngs[b] if rngs is not None else None
        rows, fresh, follow, lost = [], [], [], []
        if reset is None or not reset[b]:
            for i in range(n):
                if not tracks.valid[b, i] or (rng is not None and rng.random() < rules.drop):
                    continue
                ok = scores[b, i] >= rules.keep_thr
                gone = 0 if ok else int(tracks.lost[b, i]) + 1
                if gone > rules.max_lost:
                    continue
                rows.append(i)
                fresh.append(bool(ok))
                follow.append(matched.get(i, int(tracks.follow[b, i])))
                lost.append(gone)
            followed = set(follow)
            for r, pid in matched.items():
                if rng is not None and rng.random() < rules.drop:
                    continue
                # the detect query that found a person becomes its track when it scores as a runtime
                # birth must (below ``birth_thr`` the person stays untracked, as at run time)
                if r >= n and pid not in followed and scores[b, r] >= rules.birth_thr:
                    rows.append(r)
                    fresh.append(True)
                    follow.append(pid)
                    lost.append(0)
            if rng is not None and rules.fp > 0 and rng.random() < rules.fp:
                spare = [q for q in np.argsort(-scores[b, n:]) + n
                         if q not in matched and scores[b, q] >= rules.fp_thr]
                if spare:
                    rows.append(int(spare[0]))
                    fresh.append(True)
                    follow.append(-1)
                    lost.append(0)
        plan.rows.append(rows)
        plan.fresh.append(fresh)
        plan.follow.append(follow)
        plan.lost.append(lost)
    return plan


def track_detect_rows(pose: torch.Tensor, n: int, track_mask: torch.Tensor, max_dist: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The runtime's track / detect-row pairs (:func:`pavenet.tracker.track_detect_pairs`) on a batch.

    A track row pairs with its nearest detect row when that row's median joint distance is below
    ``max_dist`` x the track pose's size and no other track is less than twice as far from it. The
    runtime assigns rows with ``lap``; here each track takes its nearest row (the runtime's rule up
    to rare ties), without a host sync.

    Args:
        pose: [B, M, K, 2] this frame's poses (rows 0..n-1 answer the tracks).
        track_mask: [B, n] bool, False for padding tracks.

    Distances are in the model's normalised coordinates, as at run time (x / width, y / height).

    Returns:
        (paired [B, n] bool, row [B, n] the detect row's index among rows n.., distance [B, n] as a
        share of the track pose's size).
    """
    trk, det = pose[:, :n], pose[:, n:]  # [B, n, K, 2], [B, Q, K, 2]
    size = (trk.amax(2) - trk.amin(2)).amax(-1).clamp(min=1e-6)  # [B, n]
    gap = (trk[:, :, None] - det[:, None]).norm(dim=-1).median(-1).values  # [B, n, Q]
    dist = gap / size[..., None]
    dist = dist.masked_fill(~track_mask[..., None], float("inf"))
    best, j = dist.min(-1)  # [B, n]
    col = torch.gather(dist, 2, j[:, None, :].expand(-1, n, -1))  # [B, n, n]: [b, t, i] = dist[b, t, j[b, i]]
    eye = torch.eye(n, dtype=torch.bool, device=pose.device)
    others = col.masked_fill(eye, float("inf")).amin(1)  # [B, n]: nearest other track to my row
    return (best < max_dist) & (others >= 2 * best) & track_mask, j, best


def fuse_tracks(pose: torch.Tensor, kscore: torch.Tensor, n: int, track_mask: torch.Tensor,
                max_dist: float, rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
    """The runtime's track-pose fusion (:func:`pavenet.tracker.fuse_track_poses`) on a batch: each
    track row paired by :func:`track_detect_rows` (given as ``rows``, or computed) is averaged with
    its detect row, weighted by keypoint scores.

    Args:
        pose: [B, M, K, 2] this frame's poses (rows 0..n-1 answer the tracks); kscore: [B, M, K].
        track_mask: [B, n] bool, False for padding tracks.

    Returns:
        [B, M, K, 2]: ``pose`` with the track rows fused (detached).
    """
    pose, kscore = pose.detach(), kscore.detach()
    if max_dist <= 0 or n == 0 or pose.shape[1] == n:
        return pose
    ok, j, _ = track_detect_rows(pose, n, track_mask, max_dist) if rows is None else rows
    trk, det = pose[:, :n], pose[:, n:]
    k = pose.shape[2]
    drow = torch.gather(det, 1, j[..., None, None].expand(-1, -1, k, 2))  # [B, n, K, 2]
    dsc = torch.gather(kscore[:, n:], 1, j[..., None].expand(-1, -1, k))  # [B, n, K]
    a = kscore[:, :n]
    w = (a / (a + dsc).clamp(min=1e-9))[..., None]
    fused = torch.where(ok[..., None, None], w * trk + (1 - w) * drow, trk)
    return torch.cat([fused, det], 1)


def reseat_tracks(hidden: torch.Tensor, n: int, rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                  reseat_dist: float) -> torch.Tensor:
    """The runtime's re-seat (``TrackerThresholds.reseat_dist``): [B, M, D] ``hidden`` with each
    track row whose detect row (``rows`` from :func:`track_detect_rows`) lies within
    ``reseat_dist`` of it replaced by that detect row's state."""
    ok, j, dist = rows
    take = ok & (dist < reseat_dist)  # [B, n]
    det = torch.gather(hidden[:, n:], 1, j[..., None].expand(-1, -1, hidden.shape[-1]))  # [B, n, D]
    return torch.cat([torch.where(take[..., None], det, hidden[:, :n]), hidden[:, n:]], 1)


def pinned(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device`` without waiting for the device (pinned, non-blocking copy)."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def build_tracks(plan: Handover, hidden: torch.Tensor, new_pose: torch.Tensor, old_pose: torch.Tensor,
                 n_old: int) -> TrackBatch:
    """Next frame's :class:`TrackBatch` from a plan.

    Args:
        hidden: [B, M, D] this frame's decoder states of every query row.
        new_pose: [B, M, K, 2] the pose the runtime would feed for each row (refined).
        old_pose: [B, N, K, 2] the poses this frame's N tracks were fed with (kept by lost tracks).
        n_old: N.
    """
    b, _, d = hidden.shape
    k = new_pose.shape[2]
    size = max((len(r) for r in plan.rows), default=0)
    if size == 0:
        return TrackBatch.empty(b, d, k, hidden.device)
    index = np.zeros((b, size), np.int64)
    stale = np.zeros((b, size), bool)
    valid = np.zeros((b, size), bool)
    follow = np.full((b, size), -1, np.int64)
    lost = np.zeros((b, size), np.int64)
    for i in range(b):
        m = len(plan.rows[i])
        index[i, :m] = plan.rows[i]
        stale[i, :m] = ~np.asarray(plan.fresh[i], bool)
        valid[i, :m], follow[i, :m], lost[i, :m] = True, plan.follow[i], plan.lost[i]
    idx, stale_t, mask = (pinned(x, hidden.device) for x in (index, stale, valid))
    queries = torch.gather(hidden.detach(), 1, idx[..., None].expand(-1, -1, d))
    pose = torch.gather(new_pose.detach(), 1, idx[..., None, None].expand(-1, -1, k, 2))
    if n_old:  # a lost track (always a row < N) keeps the pose it was fed with
        old_idx = idx.clamp(max=n_old - 1)
        old = torch.gather(old_pose, 1, old_idx[..., None, None].expand(-1, -1, k, 2))
        pose = torch.where(stale_t[..., None, None], old, pose)
    return TrackBatch(queries * mask[..., None], pose, mask, valid, follow, lost)


def diagnostics(matches: list[tuple[np.ndarray, np.ndarray]], tracks: TrackBatch, ids: np.ndarray,
                l1: torch.Tensor, l1_n: torch.Tensor, is_track: torch.Tensor) -> dict:
    """Sums over one frame batch (the trainer averages them over the log interval).

    Args:
        matches: last-layer matches; tracks: the frame's track queries; ids: [B, G] host identities.
        l1, l1_n: [M] keypoint L1 sums and counts of the M matched pairs (device, in match order);
        is_track: [M] bool, matched pair is a track query.

    Host counts are floats; the keypoint error sums stay device tensors until logged.
    """
    n = tracks.size
    out = {"images": float(len(matches)), "n_trk": float(tracks.valid.sum()), "n_trk_pos": 0.0, "n_det_pos": 0.0,
           "id_same": 0.0}
    for b, (rows, cols) in enumerate(matches):
        trk = rows < n
        out["n_trk_pos"] += float(trk.sum())
        out["n_det_pos"] += float((~trk).sum())
        if n:
            out["id_same"] += float((tracks.follow[b, rows[trk]] == ids[b, cols[trk]]).sum())
    t = is_track.to(l1.dtype)
    out.update(trk_l1=(l1 * t).sum(), trk_l1_n=(l1_n * t).sum(), det_l1=(l1 * (1 - t)).sum(),
               det_l1_n=(l1_n * (1 - t)).sum())
    return out


def diagnostic_values(sums: dict) -> dict[str, float]:
    """The log's diagnostic keys from summed counts (any number of steps)."""
    sums = {k: float(v) for k, v in sums.items()}
    images = max(sums.get("images", 0.0), 1.0)
    return {
        "trk_kpt_l1": sums.get("trk_l1", 0.0) / max(sums.get("trk_l1_n", 0.0), 1.0),
        "det_kpt_l1": sums.get("det_l1", 0.0) / max(sums.get("det_l1_n", 0.0), 1.0),
        "n_trk": sums.get("n_trk", 0.0) / images,
        "n_trk_pos": sums.get("n_trk_pos", 0.0) / images,
        "n_det_pos": sums.get("n_det_pos", 0.0) / images,
        "trk_id_con": sums.get("id_same", 0.0) / max(sums.get("n_trk_pos", 0.0), 1.0),
    }
