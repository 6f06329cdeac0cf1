"""Metric code on constructed predictions: perfect -> 1, a swap -> the expected ID switches."""

import numpy as np
import pytest

from pavenet.clip import Frame
from pavenet.layouts import COCO17
from training.evaluation.metrics import PredFrame, coco_keypoint_ap, posetrack_metrics

K = 17


def _person(cx: float, cy: float, rng) -> np.ndarray:
    kp = np.zeros((K, 3), np.float32)
    kp[:, 0] = cx + rng.uniform(-20, 20, K)
    kp[:, 1] = cy + np.linspace(-60, 60, K)
    kp[:, 2] = 2
    return kp


def _video(frames: int = 10, people: int = 3):
    rng = np.random.default_rng(0)
    gts = []
    for t in range(frames):
        kps = np.stack([_person(80 + 90 * i + 3 * t, 120, rng) for i in range(people)])
        boxes = np.concatenate([kps[:, :, :2].min(1), kps[:, :, :2].max(1)], 1)
        heads = np.stack([[kp[0, 0] - 10, kp[0, 1] - 10, kp[0, 0] + 10, kp[0, 1] + 10] for kp in kps])
        heads = heads.astype(np.float32)
        gts.append(Frame(None, kps, boxes.astype(np.float32), np.arange(people, dtype=np.int64) + 7, heads))
    return gts


def _perfect(gts):
    return [PredFrame(g.track_ids.copy(), g.keypoints[:, :, :2].copy(), np.ones((g.num_people, K), np.float32),
                      np.ones(g.num_people, np.float32)) for g in gts]


def test_perfect_predictions_score_one():
    gts = _video()
    seqs = [(gts, _perfect(gts))]
    ap = coco_keypoint_ap(seqs, COCO17)
    assert ap["ap"] == pytest.approx(1.0) and ap["ap50"] == pytest.approx(1.0)
    m = posetrack_metrics(seqs, COCO17)
    assert m["pck_ap"] == pytest.approx(1.0)
    assert m["mota"] == pytest.approx(1.0)
    assert m["idf1"] == pytest.approx(1.0)
    assert m["id_switches"] == 0
    assert m["num_gt_tracks"] == 3
    assert m["joint_outcomes"]["shown_right"] == pytest.approx(1.0)


def test_one_swapped_identity_counts_two_switches():
    gts = _video()
    preds = _perfect(gts)
    for p in preds[5:]:  # from frame 5 on, predicted IDs of persons 0 and 1 are exchanged
        p.track_ids[[0, 1]] = p.track_ids[[1, 0]]
    m = posetrack_metrics([(gts, preds)], COCO17)
    assert m["id_switches"] == 2  # each of the two people changes hypothesis once
    assert m["idf1"] < 1.0
    assert m["joint_counts"]["switches"] == 2 * K
    assert coco_keypoint_ap([(gts, preds)], COCO17)["ap"] == pytest.approx(1.0)  # AP ignores identity


def test_misses_and_false_positives_lower_mota_and_ap():
    gts = _video()
    preds = _perfect(gts)
    preds = [PredFrame(p.track_ids[:2], p.keypoints[:2], p.keypoint_scores[:2], p.scores[:2]) for p in preds]
    m = posetrack_metrics([(gts, preds)], COCO17)
    assert m["mota"] == pytest.approx(2 / 3)  # one person of three never predicted
    assert m["joint_outcomes"]["unpaired"] == pytest.approx(1 / 3, abs=1e-4)
    hidden = [PredFrame(p.track_ids, p.keypoints, np.where(np.arange(K) < 5, 0.1, 1.0).astype(np.float32)[None]
                        .repeat(len(p.track_ids), 0), p.scores) for p in preds]
    out = posetrack_metrics([(gts, hidden)], COCO17, keypoint_thr=0.5)["joint_outcomes"]
    assert out["hidden_right"] == pytest.approx(2 / 3 * 5 / K, abs=1e-4)
    assert out["shown_right"] == pytest.approx(2 / 3 * 12 / K, abs=1e-4)
    assert coco_keypoint_ap([(gts, preds)], COCO17)["ap"] < 0.8
    far = [PredFrame(p.track_ids, p.keypoints + 500, p.keypoint_scores, p.scores) for p in _perfect(gts)]
    m = posetrack_metrics([(gts, far)], COCO17)
    assert m["pck_ap"] == 0.0 and m["mota"] == pytest.approx(-1.0)  # every person missed and one FP each
    assert m["joint_outcomes"]["unpaired"] == 1.0 and m["joint_outcomes"]["extra_shown"] == 1.0


def test_unlabelled_frames_are_skipped():
    gts = _video()
    preds = _perfect(gts)
    gts[3].labelled = False
    preds[3] = PredFrame.empty(K)
    assert posetrack_metrics([(gts, preds)], COCO17)["mota"] == pytest.approx(1.0)
