import math

import numpy as np
import pytest
import torch

from pavenet.layouts import COCO17
from training.objective.losses import RealNVP, oks, paired_oks, rle_loss, sigmoid_focal_loss
from training.objective.matcher import HungarianMatcher, TargetBatch, Targets, assign, match_all


def test_focal_loss_matches_formula():
    x = torch.tensor([-3.0, -0.5, 0.0, 1.2, 4.0])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    got = sigmoid_focal_loss(x, y)
    for xi, yi, gi in zip(x.tolist(), y.tolist(), got.tolist()):
        p = 1 / (1 + math.exp(-xi))
        want = -0.25 * (1 - p) ** 2 * math.log(p) if yi else -0.75 * p**2 * math.log(1 - p)
        assert abs(gi - want) < 1e-6


def test_flow_is_invertible_and_log_det_matches_autograd():
    torch.manual_seed(0)
    flow = RealNVP()
    with torch.no_grad():  # make the couplings far from identity
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(5, 2, dtype=torch.float64)
    flow = flow.double()
    _, log_det = flow.inverse(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None])[0][0], x[i])
        assert torch.allclose(torch.logdet(jac), log_det[i], atol=1e-8)


def test_rle_prefers_right_sigma():
    flow = RealNVP()
    pred = torch.zeros(1, 3, 2)
    gt = torch.full((1, 3, 2), 0.01)
    vis = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        losses = [float(rle_loss(pred, torch.full_like(pred, s), gt, vis, flow).mean()) for s in (0.0005, 0.01, 0.5)]
        assert losses[1] < losses[0] and losses[1] < losses[2]
        assert losses[1] < 0, "a well-fitting sigma gives a negative log-likelihood loss"
        assert float(rle_loss(pred, pred + 0.1, gt, torch.zeros_like(vis), flow).abs().sum()) == 0
        # Relative to the person's size: the same error on a person 10x larger wants a 10x smaller sigma.
        rel = [float(rle_loss(pred, torch.full_like(pred, s), gt * 10, vis, flow, torch.tensor([10.0])).mean())
               for s in (0.0005, 0.01, 0.5)]
        assert rel == pytest.approx(losses, rel=1e-5), "the loss depends on the error relative to the person's size"


def test_oks():
    t = torch.rand(2, 17, 2)
    vis = torch.ones(2, 17, dtype=torch.bool)
    sim = oks(t, t, vis, torch.tensor([0.1, 0.1]), torch.full((17,), 0.05))
    assert torch.allclose(sim.diagonal(), torch.ones(2)) and sim[0, 1] < 1


def _targets(points):
    kp = torch.tensor(points, dtype=torch.float32)
    g = len(kp)
    return Targets(kp, torch.ones(g, kp.shape[1], dtype=torch.bool), torch.full((g,), 0.05),
                   torch.arange(g))


def test_matcher_picks_the_obvious_assignment():
    sig = torch.full((4,), 0.05)
    tgt = _targets([[[0.2, 0.2]] * 4, [[0.8, 0.8]] * 4])
    kpts = torch.tensor([[[0.79, 0.81]] * 4, [[0.5, 0.5]] * 4, [[0.21, 0.2]] * 4])
    cost = HungarianMatcher(sig).cost(torch.zeros(1, 3), kpts[None], TargetBatch.stack([tgt])).numpy()
    rows, cols = match_all(cost, np.array([2]))[0]
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 2, 1: 0}


def test_matcher_handles_empty_sides():
    sig = torch.full((4,), 0.05)
    m = HungarianMatcher(sig)
    empty = Targets(torch.zeros(0, 4, 2), torch.zeros(0, 4, dtype=torch.bool), torch.zeros(0),
                    torch.zeros(0, dtype=torch.int64))
    batch = TargetBatch.stack([empty, _targets([[[0.5, 0.5]] * 4])])
    cost = m.cost(torch.zeros(2, 3), torch.rand(2, 3, 4, 2), batch).numpy()
    rows, cols = match_all(cost, batch.counts)[0]
    assert len(rows) == len(cols) == 0
    rows, cols = match_all(np.zeros((1, 0, 1)), np.array([1]))[0]
    assert len(rows) == len(cols) == 0
    rows, cols = assign(np.array([[1.0, 0.0, 5.0]]))
    assert rows.tolist() == [0] and cols.tolist() == [1]


def _reference_stage_losses(logits, kpts, sigmas_pred, people, flow, oks_sigmas, n_total):
    """One stage's losses computed image by image with plain formulas and scipy's Hungarian
    solver (the per-sample loop the batched criterion replaced): (loss_cls, loss_kpt)."""
    from scipy.optimize import linear_sum_assignment

    from training.objective.losses import varifocal_loss

    cls_sum, rle_sum, coords = 0.0, 0.0, 0.0
    for b, (gt, vis, area) in enumerate(people):
        p = logits[b].sigmoid()
        labels = torch.zeros_like(p)
        if len(gt):
            pos = 0.25 * (1 - p) ** 2 * -(p + 1e-8).log()
            neg = 0.75 * p**2 * -(1 - p + 1e-8).log()
            cost = torch.zeros(len(p), len(gt))
            for q in range(len(p)):
                for g in range(len(gt)):
                    v = vis[g].float()
                    l1 = ((kpts[b, q] - gt[g]).abs().sum(-1) * v).sum() / (2 * v.sum().clamp(min=1))
                    d2 = ((kpts[b, q] - gt[g]) ** 2).sum(-1)
                    o = (torch.exp(-d2 / (2 * (2 * oks_sigmas) ** 2 * area[g])) * v).sum() / v.sum().clamp(min=1)
                    cost[q, g] = 2 * (pos[q] - neg[q]) + 70 * l1 + 7 * (1 - o)
            rows, cols = linear_sum_assignment(cost.numpy())
            for q, g in zip(rows, cols):
                v = vis[g].float()
                d2 = ((kpts[b, q] - gt[g]) ** 2).sum(-1)
                labels[q] = ((torch.exp(-d2 / (2 * (2 * oks_sigmas) ** 2 * area[g])) * v).sum()
                             / v.sum().clamp(min=1)).clamp(min=0.01)
                rle = rle_loss(kpts[b, q][None], sigmas_pred[b, q][None], gt[g][None], vis[g][None], flow,
                               area[g].sqrt()[None])
                rle_sum = rle_sum + rle.sum()
                coords += 2 * float(vis[g].sum())
        cls_sum = cls_sum + varifocal_loss(logits[b], labels).sum()
    return cls_sum / n_total, rle_sum / max(coords, 1)


def test_batched_criterion_equals_a_per_image_reference():
    """The batched criterion (padded targets, one cost tensor, index-tensor losses) gives the same
    losses as an image-by-image loop, to 1e-5, on images with 0, 2 and 3 people."""
    from training.objective.criterion import LossConfig, SetCriterion
    from training.objective.tracking import TrackBatch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    k, n_q, n_enc, layers = 17, 6, 9, 2
    counts = (0, 2, 3)
    items = []
    for i, g in enumerate(counts):
        items.append({"keypoints": rng.uniform(0.2, 0.8, (g, k, 2)).astype(np.float32),
                      "visible": rng.random((g, k)) < 0.8, "area": rng.uniform(0.01, 0.1, g).astype(np.float32),
                      "track_ids": np.arange(g) + 10 * i, "ignore": np.zeros((0, 4), np.float32)})
    tgt = TargetBatch.stack(items)
    b = len(counts)
    out = {"scores": torch.randn(layers, b, n_q), "keypoints": torch.rand(layers, b, n_q, k, 2) * 0.6 + 0.2,
           "sigmas": torch.rand(layers, b, n_q, k, 2) * 0.5 + 0.05, "enc_scores": torch.randn(b, n_enc),
           "enc_keypoints": torch.rand(b, n_enc, k, 2) * 0.6 + 0.2,
           "enc_sigmas": torch.rand(b, n_enc, k, 2) * 0.5 + 0.05}
    sig = torch.tensor(COCO17.sigmas, dtype=torch.float32)
    crit = SetCriterion(sig, layers, LossConfig(sigma_relative=True))
    tracks = TrackBatch.empty(b, 8, k, "cpu")
    enc_m, layer_m, _ = crit.match(out, tgt, tracks)
    losses, _ = crit(out, tgt, tracks, enc_m, layer_m)
    people = [(torch.from_numpy(t["keypoints"]), torch.from_numpy(t["visible"]), torch.from_numpy(t["area"]))
              for t in items]
    n_total = float(sum(counts))
    stages = [("enc_", out["enc_scores"], out["enc_keypoints"], out["enc_sigmas"], crit.enc_flow)]
    stages += [("d0." if layer < layers - 1 else "", out["scores"][layer], out["keypoints"][layer],
                out["sigmas"][layer], crit.dec_flow) for layer in range(layers)]
    for prefix, logits, kpts, sg, flow in stages:
        cls_ref, kpt_ref = _reference_stage_losses(logits, kpts, sg, people, flow, sig, n_total)
        assert abs(float(losses[f"{prefix}loss_cls"].detach()) - float(cls_ref)) < 1e-5, prefix
        kpt = float(losses[f"{prefix}loss_kpt"].detach())
        assert abs(kpt - float(torch.as_tensor(kpt_ref).detach())) < 1e-5, prefix


def test_refinement_layers_get_the_oks_term_when_it_is_weighted():
    """With ``loss_oks`` the refined poses get ``dN.loss_oks_refine`` = weight * sum(1 - OKS) / n
    (0 for a perfect pose); without it the key is absent."""
    from training.objective.criterion import LossConfig, SetCriterion

    torch.manual_seed(0)
    k = 17
    gt = torch.rand(1, 2, k, 2) * 0.5 + 0.25
    tgt = TargetBatch.stack([{"keypoints": gt[0].numpy(), "visible": np.ones((2, k), bool),
                              "area": np.array([0.04, 0.02], np.float32), "track_ids": np.arange(2),
                              "ignore": np.zeros((0, 4), np.float32)}])
    sig = torch.tensor(COCO17.sigmas, dtype=torch.float32)
    index = (torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([0, 1]))  # row 1 is person 0
    refined = torch.stack([gt[:, [1, 0]], gt[:, [1, 0]] + 0.01])  # [Lr=2, B, R, K, 2]: layer 0 exact
    sigmas = torch.full_like(refined, 0.1)
    crit = SetCriterion(sig, 1, LossConfig(loss_oks=2.0))
    out = crit.refine_losses(refined, sigmas, tgt, index, 2.0)
    assert float(out["d0.loss_oks_refine"]) < 1e-6
    expected = 2.0 * (1 - paired_oks(gt[0] + 0.01, gt[0], torch.ones(2, k, dtype=torch.bool),
                                     torch.tensor([0.04, 0.02]), sig)).sum() / 2.0
    assert abs(float(out["d1.loss_oks_refine"]) - float(expected)) < 1e-6
    assert "d0.loss_oks_refine" not in SetCriterion(sig, 1, LossConfig()).refine_losses(refined, sigmas, tgt,
                                                                                      index, 2.0)


def _pair_targets():
    """Two people seen the same way whose left/right labels are opposite (the ambiguous case):
    gt [2, 17, 2], with shoulders 0.1 apart."""
    base = torch.full((17, 2), 0.5)
    base[5, 0], base[6, 0] = 0.45, 0.55
    flipped = base.clone()
    flipped[[5, 6]] = base[[6, 5]]
    return torch.stack([base, flipped])


def test_side_mixture_commits_where_plain_rle_hedges():
    """With side logits the keypoint loss is a mixture over each pair's two orders: between two
    people labelled the opposite way round, committing to two places beats a pose with both
    shoulders in the middle (which plain RLE rates no worse), and at z = 0 the loss cannot tell
    a pose from its pair-swapped copy."""
    from training.objective.losses import rle_sum

    torch.manual_seed(0)
    flow = RealNVP()
    gt = _pair_targets()
    vis = torch.ones(2, 17, dtype=torch.bool)
    sig = torch.full((2, 17, 2), 0.01)
    pairs = torch.tensor(COCO17.flip_pairs)
    committed = gt[[0, 0]]  # both people predicted in the first order
    middle = committed.clone()
    middle[:, [5, 6], 0] = 0.5
    z = torch.zeros(2, len(pairs))
    with torch.no_grad():
        plain = [float(rle_sum(p, sig, gt, vis, flow)) for p in (committed, middle)]
        mixed = [float(rle_sum(p, sig, gt, vis, flow, side=z, pairs=pairs)) for p in (committed, middle)]
        assert plain[1] <= plain[0] + 1e-3, "plain RLE does not reward committing"
        assert mixed[0] < mixed[1] - 10, "the mixture does"
        swapped = committed.clone()
        swapped[:, [5, 6]] = committed[:, [6, 5]]
        assert float(rle_sum(swapped, sig, gt, vis, flow, side=z, pairs=pairs)) == pytest.approx(mixed[0], rel=1e-5)
        # A sure logit (|z| large) is plain RLE of the order shown, plus nothing.
        sure = float(rle_sum(gt, sig, gt, vis, flow, side=torch.full((2, len(pairs)), 30.0), pairs=pairs))
        assert sure == pytest.approx(float(rle_sum(gt, sig, gt, vis, flow)), abs=1e-4)


def test_side_heads_show_the_pose_in_the_likelier_order():
    """A positive swap logit swaps the pair's joints (and sigmas) in what the model outputs; a
    negative one leaves them; unpaired joints never move."""
    from pavenet.model.side import SideHead

    pairs = COCO17.flip_pairs
    head = SideHead(8, pairs, 17)
    x = torch.randn(2, 3, 8)
    kp, sg = torch.rand(2, 3, 17, 2), torch.rand(2, 3, 17, 2)
    out_kp, out_sg, logits = head(x, kp, sg)
    assert logits.shape == (2, 3, len(pairs)) and torch.equal(out_kp, kp), "a new head trusts the slots"
    with torch.no_grad():
        head.linear.bias[:] = 5.0
        head.linear.bias[0] = -5.0  # the eyes stay
    out_kp, out_sg, _ = head(x, kp, sg)
    flip = np.array(COCO17.flip_index)
    flip[[1, 2]] = [1, 2]
    assert torch.equal(out_kp, kp[..., flip, :]) and torch.equal(out_sg, sg[..., flip, :])
