"""Track queries: matching rules, the runtime-like handover, diagnostics and the no-grad window."""

import numpy as np
import pytest
import torch

from pavenet.layouts import COCO17
from pavenet.model.pavenet import build_model
from pavenet.synth import SynthConfig
from tests.test_model import TINY
from training.data.dataset import ClipDataset, SyntheticSource, collate
from training.loop.sequence import TrainStep
from training.objective.criterion import LossConfig, SetCriterion
from training.objective.matcher import HungarianMatcher, TargetBatch, Targets, assign, extend_topk, match_topk
from training.objective.tracking import (
    TrackBatch,
    TrackRules,
    build_tracks,
    diagnostic_values,
    diagnostics,
    fuse_tracks,
    match_image,
    plan_handover,
    reseat_tracks,
    track_detect_rows,
)

K = 17
SIG = torch.tensor(COCO17.sigmas)


def _pose(x, y):
    """A small pose centred at (x, y), normalised coordinates."""
    offsets = torch.linspace(-0.03, 0.03, K)
    return torch.stack([x + offsets, y + offsets.flip(0)], -1)


def _targets(people: dict[int, tuple[float, float]]) -> Targets:
    ids = list(people)
    kp = torch.stack([_pose(*people[i]) for i in ids])
    return Targets(kp, torch.ones(len(ids), K, dtype=torch.bool), torch.full((len(ids),), 0.01),
                   torch.tensor(ids))


# Frame t: person 5 is still there, person 7 has left, person 9 has entered.
GT = _targets({5: (0.3, 0.3), 9: (0.7, 0.7)})
# Track query 0 followed 5 and predicts it slightly off (so a detect query on 5 would win plain
# Hungarian); track query 1 followed 7 (gone) and predicts where 7 was; detect query 2 sits on 5
# exactly, detect query 3 on 9.
PRED = torch.stack([_pose(0.33, 0.33), _pose(0.9, 0.1), _pose(0.3, 0.3), _pose(0.7, 0.7)])
LOGITS = torch.tensor([2.0, 2.0, 2.0, 2.0])
PREV = torch.tensor([5, 7])
MASK = torch.tensor([True, True])


def _pairs(rows, cols):
    return {int(GT.track_ids[c]): int(r) for r, c in zip(rows, cols)}


def _cost():
    return HungarianMatcher(SIG).cost(LOGITS[None], PRED[None], TargetBatch.stack([GT]))[0].numpy()


def _match(assignment, bonus, valid=(True, True)):
    return match_image(_cost(), PREV.numpy(), np.array(valid), GT.track_ids.numpy(),
                       TrackRules(assignment=assignment, bonus=bonus))


def test_plain_hungarian_prefers_the_closer_detect_query():
    rows, cols = assign(_cost())
    assert _pairs(rows, cols) == {5: 2, 9: 3}


def test_bonus_keeps_the_track_query_on_its_person():
    rows, cols = _match("bonus", -10.0)
    assert _pairs(rows, cols) == {5: 0, 9: 3}, "track query 0 keeps person 5; 9 is picked up by a detect query"
    rows, cols = _match("bonus", 0.0)
    assert _pairs(rows, cols) == {5: 2, 9: 3}, "without the bonus it is plain Hungarian"


def test_one_to_many_encoder_matching():
    """Each person takes its k cheapest proposals; a proposal two people want goes to the cheaper."""
    cost = np.full((1, 6, 3), 10.0)
    cost[0, :, 0] = [0, 1, 2, 9, 9, 0.5]  # person 0 wants rows 0, 5, 1
    cost[0, :, 1] = [9, 0.2, 9, 0, 3, 9]  # person 1 wants rows 3, 1, 4: row 1 is cheaper for person 1
    rows, cols = match_topk(cost, np.array([2]), 3)[0]  # person 2 is padding
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 0, 5: 0, 1: 1, 3: 1, 4: 1}
    rows, cols = match_topk(cost[:, :, :0], np.array([0]), 3)[0]
    assert len(rows) == len(cols) == 0
    rows, cols = match_topk(cost[:, :2], np.array([2]), 3)[0]  # fewer proposals than k
    assert sorted(rows.tolist()) == [0, 1]


def test_hybrid_layers_add_detect_positives_to_a_one_to_one_match():
    """dec_topk: a one-to-one match (track row 0 on person 1, detect row 3 on person 0) gains each
    person's next cheapest detect rows; track rows and already-matched rows are not taken again."""
    cost = np.full((6, 2), 10.0)  # rows 0-1 are track queries, 2-5 detect queries
    cost[:, 0] = [0.0, 9, 0.4, 0.1, 0.3, 9]
    cost[:, 1] = [0.0, 9, 0.2, 9, 0.5, 0.6]
    one = (np.array([3, 0]), np.array([0, 1]))
    rows, cols = extend_topk(cost, one, n_tracks=2, k=3)
    # person 0 wants rows 4, 2; person 1 wants rows 2, 4: each row goes to the cheaper person
    assert dict(zip(rows.tolist(), cols.tolist())) == {3: 0, 4: 0, 0: 1, 2: 1}
    assert cols.tolist() == sorted(cols.tolist())
    assert extend_topk(cost, one, 2, 1) is one and extend_topk(cost[:, :0], one, 2, 3) is one


def test_hard_assignment():
    rows, cols = _match("hard", 0.0)
    assert _pairs(rows, cols) == {5: 0, 9: 3}
    assert 1 not in rows.tolist(), "the query of the person who left is trained towards background"


def test_padding_rows_are_never_matched():
    rows, _ = _match("bonus", -10.0, valid=(False, True))
    assert 0 not in rows.tolist()


def test_handover_is_the_runtimes():
    """A track below keep_thr is lost: fed back with its old pose, retired after max_lost frames;
    the detect query matched to a new person becomes its track, fed its (refined) pose."""
    d = 4
    old_pose = torch.stack([_pose(0.3, 0.3), _pose(0.9, 0.1)])[None]  # [1, 2, K, 2]

    def tracks(lost):
        return TrackBatch(torch.zeros(1, 2, d), old_pose, torch.ones(1, 2, dtype=torch.bool), np.ones((1, 2), bool),
                          np.array([[5, 7]]), np.array([lost]))

    scores = np.array([[0.9, 0.1, 0.9, 0.8]])  # track 0 confident, track 1 (person 7 gone) not
    matches = [(np.array([0, 3]), np.array([0, 1]))]  # person 5 -> track 0, person 9 -> detect query 3
    rules = TrackRules(keep_thr=0.3, max_lost=2, drop=0.0, fp=0.0)
    ids = GT.track_ids.numpy()[None]
    plan = plan_handover(scores, matches, tracks([0, 1]), ids, rules, None)
    assert plan.rows == [[0, 1, 3]] and plan.fresh == [[True, False, True]] and plan.lost == [[0, 2, 0]]
    assert plan.follow == [[5, 7, 9]]
    hidden = torch.arange(4.0).view(1, 4, 1).expand(1, 4, d)
    new_pose = PRED[None] + 0.01
    nxt = build_tracks(plan, hidden, new_pose, old_pose, 2)
    assert torch.allclose(nxt.keypoints[0, 0], new_pose[0, 0]), "a confident track takes its new pose"
    assert torch.allclose(nxt.keypoints[0, 1], old_pose[0, 1]), "a lost track keeps the pose it was fed"
    assert torch.allclose(nxt.keypoints[0, 2], new_pose[0, 3]), "a new track starts from its detect query's pose"
    assert nxt.queries[0, :, 0].tolist() == [0.0, 1.0, 3.0], "every track takes its row's new hidden state"
    assert plan_handover(scores, matches, tracks([0, 2]), ids, rules, None).rows == [[0, 3]], "lost too long"
    reset = plan_handover(scores, matches, tracks([0, 0]), ids, rules, None, reset=np.array([True]))
    assert reset.rows == [[]], "a reset clip starts its next frame without tracks"
    strict = TrackRules(keep_thr=0.3, max_lost=2, drop=0.0, fp=0.0, birth_thr=0.85)
    assert plan_handover(scores, matches, tracks([0, 1]), ids, strict, None).rows == [[0, 1]], \
        "a detection scoring below birth_thr leaves its person untracked, as at run time"


class Oracle(torch.nn.Module):
    """Stands in for PAVENet: returns the ground truth. A track query carries the identity whose
    pose it gave in hidden[..., 0]; with ``shuffle`` it gives the next person's pose instead, so
    it never stays on the person it followed."""

    def __init__(self, clip_targets: list[TargetBatch], shuffle: bool = False):
        super().__init__()
        self.cfg = TINY.override(num_queries=6, window="current")
        self.refiner = None
        self.targets, self.shuffle, self.t = clip_targets, shuffle, -1
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def encode(self, images):
        self.t += 1  # frames are encoded in order; the tokens remember which frame they are
        return images.new_full((images.shape[0], 1, self.cfg.d_model), float(self.t))

    def encode_fine(self, images):
        return self.encode(images), None  # no stride-4 head

    def detect(self, tokens, window, track_queries=None, track_keypoints=None, track_mask=None):
        frame = self.targets[int(tokens[0, 0, 0])]
        b, q, d = len(frame), self.cfg.num_queries, self.cfg.d_model
        n = 0 if track_queries is None else track_queries.shape[1]
        scores = torch.full((b, n + q), -9.0)
        kps = torch.full((b, n + q, K, 2), 0.5)
        hidden = torch.zeros(b, n + q, d)
        for i, tgt in enumerate(frame):
            ids = tgt.track_ids.tolist()
            for j in range(n):
                if track_mask[i, j] and int(track_queries[i, j, 0]) in ids:
                    person = ids.index(int(track_queries[i, j, 0]))
                    answer = (person + 1) % len(ids) if self.shuffle else person
                    scores[i, j], kps[i, j], hidden[i, j, 0] = 9.0, tgt.keypoints[answer], ids[answer]
            for person, tid in enumerate(ids):  # detect queries find everybody
                scores[i, n + person], kps[i, n + person], hidden[i, n + person, 0] = 9.0, tgt.keypoints[person], tid
        z = torch.zeros(b, 4)
        return {"scores": scores[None] + self.weight, "keypoints": kps[None], "sigmas": torch.full_like(kps, 0.1)[None],
                "hidden": hidden, "window_keypoints": kps[:, :, None], "enc_scores": z,
                "enc_keypoints": torch.full((b, 4, K, 2), 0.5), "enc_sigmas": torch.full((b, 4, K, 2), 0.1)}


def _clip_batch(frames=4):
    src = SyntheticSource(SynthConfig(width=96, height=72, min_people=2, max_people=3, exit_rate=0.0), "train", 0)
    data = ClipDataset(src, frames, 64, 64, 0, None)
    good = [i for i in range(60) if min(len(t["track_ids"]) for t in data[i]["targets"]) >= 2][:2]
    return collate([data[i] for i in good])


# Matched with the bonus, a track query that drifts to a nearby person can still be pulled back
# onto the person it followed; plain matching (bonus 0) shows what the oracle really did.
@pytest.mark.parametrize("shuffle, bonus, expected", [(False, -10.0, 1.0), (True, 0.0, 0.0)])
def test_trk_id_con_with_an_oracle(shuffle, bonus, expected):
    batch = _clip_batch()
    oracle = Oracle(batch["targets"], shuffle)
    crit = SetCriterion(SIG, 1, LossConfig(), TrackRules(bonus=bonus, drop=0.0, fp=0.0, reset=0.0))
    step = TrainStep(oracle, crit, grad_frames=3).eval()
    with torch.no_grad():
        _, sums = step(batch["images"], batch["targets"], batch["index"])
    values = diagnostic_values(sums)
    assert values["n_trk"] >= 2 and values["n_trk_pos"] <= values["n_trk"]
    assert values["trk_id_con"] == expected
    if not shuffle:
        assert values["trk_kpt_l1"] == pytest.approx(0.0, abs=1e-6)


def test_diagnostic_counts():
    tracks = TrackBatch(torch.zeros(1, 2, 8), torch.zeros(1, 2, K, 2), torch.tensor([[True, True]]),
                        np.ones((1, 2), bool), np.array([[5, 7]]), np.zeros((1, 2), np.int64))
    rows, cols = np.array([0, 3]), np.array([0, 1])
    err = (PRED[rows] - GT.keypoints[cols]).abs().sum(-1)  # [M, K]
    sums = diagnostics([(rows, cols)], tracks, GT.track_ids.numpy()[None], err.sum(-1),
                       torch.full((2,), 2.0 * K), torch.tensor(rows < 2))
    v = diagnostic_values(sums)
    assert (v["n_trk"], v["n_trk_pos"], v["n_det_pos"], v["trk_id_con"]) == (2, 1, 1, 1.0)
    assert v["det_kpt_l1"] == pytest.approx(0.0, abs=1e-6) and v["trk_kpt_l1"] == pytest.approx(0.03, abs=1e-5)


def _saved_bytes(seq, grad_frames):
    torch.manual_seed(0)
    model = build_model(TINY)
    step = TrainStep(model, SetCriterion(SIG, TINY.decoder_layers), grad_frames=grad_frames)
    batch = _clip_batch(seq)
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses, _ = step(batch["images"], batch["targets"], batch["index"])
    losses["loss"].backward()
    return total[0]


def test_no_grad_frames_keep_no_activations():
    two, four = _saved_bytes(2, 1), _saved_bytes(4, 1)
    full = _saved_bytes(4, 4)
    assert four <= 1.3 * two, (two, four)
    assert full > 2.5 * two, "with every frame under gradient the activations grow with the clip"


def test_training_fuses_track_poses_as_the_runtime_does():
    """``track_fuse_dist``: the hand-over's fusion of each track row with its detect row gives the
    runtime tracker's poses (pavenet.tracker.fuse_track_poses), padding tracks untouched."""
    from pavenet.tracker import fuse_track_poses

    rng = np.random.default_rng(0)
    k, n, q = 17, 3, 6
    base = np.stack([np.full(k, 0.2), np.linspace(0.2, 0.7, k)], -1)
    people = [base + [dx, 0] for dx in (0.0, 0.35, 0.7)]
    rows = [people[0], people[1], people[1] + [0.01, 0],  # tracks 0, 1 and a third overlapping track 1
            people[0] + [0.02, 0.01], people[1] + [0.015, 0], people[2] + [0.01, 0],
            base + [0.5, 0.1], people[2], people[0] + [0.3, 0.3]]
    kps = (np.stack(rows) + rng.normal(0, 0.004, (n + q, k, 2))).astype(np.float32)
    ks = rng.uniform(0.2, 1.0, (n + q, k)).astype(np.float32)
    expect, _ = fuse_track_poses(kps, ks, n, 0.2)
    got = fuse_tracks(torch.from_numpy(kps)[None], torch.from_numpy(ks)[None], n,
                      torch.ones(1, n, dtype=torch.bool), 0.2)
    assert torch.allclose(got[0], torch.from_numpy(expect), atol=1e-6)
    assert not np.allclose(expect[0], kps[0]) and np.allclose(expect[1:3], kps[1:3]), \
        "track 0 fused; tracks 1 and 2 overlap, so neither takes the row between them"
    # a batch of two: the second image has one real track and two padding rows
    pad = torch.tensor([[True, True, True], [True, False, False]])
    two = fuse_tracks(torch.from_numpy(np.stack([kps, kps])), torch.from_numpy(np.stack([ks, ks])), n, pad, 0.2)
    alone, _ = fuse_track_poses(kps[[0, 3, 4, 5, 6, 7, 8]], ks[[0, 3, 4, 5, 6, 7, 8]], 1, 0.2)
    assert torch.allclose(two[1, 0], torch.from_numpy(alone[0]), atol=1e-6)
    assert torch.equal(two[1, 1:], torch.from_numpy(kps[1:])), "padding and detect rows are not changed"
    assert fuse_tracks(torch.from_numpy(kps)[None], torch.from_numpy(ks)[None], n, pad[:1], 0.0).equal(
        torch.from_numpy(kps)[None]), "0: off"
    # track_reseat_dist: the same pairs re-seat a track on its detect row's state as the runtime does
    from pavenet.tracker import track_detect_pairs

    pairs = track_detect_pairs(kps, n, 0.2)
    rows = track_detect_rows(torch.from_numpy(kps)[None], n, torch.ones(1, n, dtype=torch.bool), 0.2)
    hidden = torch.arange(n + q, dtype=torch.float32)[None, :, None].expand(1, n + q, 4)  # row i holds i
    for reseat in (0.1, 0.03):
        expect_rows = list(range(n + q))
        for i, j, d in pairs:
            if d < reseat:
                expect_rows[i] = j
        got = reseat_tracks(hidden, n, rows, reseat)[0, :, 0].long().tolist()
        assert got == expect_rows, (reseat, pairs)
    assert [(i, j) for i, j, d in pairs if d < 0.1] == [(0, 3)], "track 0 is 0.05 of its size from row 3"
