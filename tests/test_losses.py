import math

import numpy as np
import pytest
import torch

from training.objective.losses import RealNVP, oks, rle_loss, sigmoid_focal_loss
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
