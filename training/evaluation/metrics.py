"""Pose-tracking metrics on streamed predictions: pycocotools OKS-AP, PoseTrack per-joint AP and
MOTA, and identity metrics (IDF1, ID switches) from motmetrics accumulators.

Inputs are aligned per frame: ground truth as :class:`pavenet.clip.Frame` (keypoints [n, K, 3] with
COCO visibility, ``track_ids``, ``head_boxes``, ``boxes``; unlabelled frames are skipped) and
predictions as :class:`PredFrame` ([m] ids, [m, K, 2] pixels, [m, K] keypoint scores, [m] scores).

- ``ap``, ``ap50``, ``ap75``: COCO keypoint AP (``COCOeval`` with the layout's OKS sigmas, the
  ground-truth box area as the object scale, people without labelled keypoints ignored).
- PoseTrack (Andriluka et al. 2018, ``poseval``): a predicted joint is correct when it lies
  within 0.5 x head size (0.6 x head-box diagonal) of the ground truth (PCKh@0.5). ``pck_ap``:
  per frame, predicted and ground-truth people are paired by Hungarian assignment (``lap``) on the
  number of correct joints; each predicted joint is then a detection ranked by its keypoint score,
  a true positive when it is correct for its paired person; AP per joint, then the mean.
  ``mota``: per joint a motmetrics accumulator (ground-truth people with that joint labelled vs
  predicted people whose joint scores >= ``keypoint_thr``, distance = PCKh distance, max 0.5);
  per-joint MOTA in ``mota_per_joint`` and the total 1 - (misses + false positives + switches) /
  ground-truth joints over all joints, as poseval reports it.
- ``idf1``, ``id_switches``, ``mota_person``: one person-level accumulator with distance 1 - OKS
  (pairs with OKS < 0.5 cannot match).
HOTA is not reported: no maintained PyPI package computes it on keypoints (TrackEval is not
packaged).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import lap
import motmetrics as mm
import numpy as np

from pavenet.clip import Frame
from pavenet.layouts import KeypointLayout


@dataclass
class PredFrame:
    """Predictions of one frame: [m] track_ids, [m, K, 2] keypoints (pixels), [m, K], [m]."""

    track_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray

    @staticmethod
    def from_poses(poses) -> PredFrame:
        return PredFrame(np.asarray(poses.track_ids), np.asarray(poses.keypoints, np.float32),
                         np.asarray(poses.keypoint_scores, np.float32), np.asarray(poses.scores, np.float32))

    @staticmethod
    def empty(k: int) -> PredFrame:
        return PredFrame(np.zeros(0, np.int64), np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32),
                         np.zeros(0, np.float32))


Sequence = tuple[list[Frame], list[PredFrame]]  # one video: ground truth and predictions, frame by frame


def _box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0))


def coco_keypoint_ap(sequences: list[Sequence], layout: KeypointLayout) -> dict[str, float]:
    """COCO keypoint AP, AP50, AP75 over every labelled frame (pycocotools)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for gts, preds in sequences:
        for gt, pred in zip(gts, preds):
            if not gt.labelled:
                continue
            image_id = len(images) + 1
            images.append({"id": image_id})
            for i in range(gt.num_people):
                kp = gt.keypoints[i]
                x1, y1, x2, y2 = (float(v) for v in gt.boxes[i])
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                             "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum()),
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": _box_area(gt.boxes[i])})
            for j in range(len(pred.track_ids)):
                kp = np.concatenate([pred.keypoints[j], pred.keypoint_scores[j][:, None]], 1)
                dets.append({"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                             "score": float(pred.scores[j])})
    if not anns or not dets:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
        coco.createIndex()
        result = coco.loadRes(dets)
        ev = COCOeval(coco, result, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(layout.sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(v), 0.0) for v in ev.stats[:3]]
    return {"ap": stats[0], "ap50": stats[1], "ap75": stats[2]}


def head_sizes(frame: Frame) -> np.ndarray:
    """[n] PoseTrack head size: 0.6 x head-box diagonal (NaN where the head box is unknown)."""
    hb = frame.head_boxes
    return 0.6 * np.hypot(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1]) if len(hb) else np.zeros(0)


def pckh_distances(frame: Frame, pred: PredFrame) -> np.ndarray:
    """[n, m, K] joint distances in head sizes; NaN where the ground-truth joint is not labelled."""
    d = np.linalg.norm(frame.keypoints[:, None, :, :2] - pred.keypoints[None], axis=-1)
    d = d / head_sizes(frame)[:, None, None]
    return np.where(frame.keypoints[:, None, :, 2] > 0, d, np.nan)


def _pair_people(correct: np.ndarray) -> list[tuple[int, int]]:
    """Hungarian pairing of ground truth and predictions maximising correct joints ([n, m, K] bool)."""
    n, m = correct.shape[:2]
    if n == 0 or m == 0:
        return []
    counts = correct.sum(-1).astype(np.float64)
    _, rows, _ = lap.lapjv(-counts, extend_cost=True)
    return [(g, int(p)) for g, p in enumerate(rows) if p >= 0 and counts[g, p] > 0]


def _average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of detections ranked by score (PASCAL VOC 2010+)."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    recall = np.cumsum(tp) / num_gt
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())


def posetrack_metrics(sequences: list[Sequence], layout: KeypointLayout, keypoint_thr: float = 0.3) -> dict:
    """PoseTrack per-joint AP (PCKh@0.5) and MOTA (motmetrics), plus person-level IDF1 and switches.

    ``joint_outcomes`` says where the labelled joints went (shares that sum to 1): ``unpaired`` (the
    person has no prediction with a joint within PCKh 0.5: not shown, or shown too far off),
    ``hidden_right`` / ``hidden_wrong`` (the paired prediction scores the joint below ``keypoint_thr``,
    and it was / was not within PCKh 0.5), ``shown_wrong`` and ``shown_right``; and ``extra_shown``,
    the shown joints of predictions paired with nobody, per labelled joint. MOTA is about
    ``shown_right - shown_wrong - extra_shown`` minus switches; the other shares say what would raise it.
    """
    from pavenet.oks import oks_matrix

    k = layout.num_keypoints
    joint_scores: list[list[np.ndarray]] = [[] for _ in range(k)]
    joint_tp: list[list[np.ndarray]] = [[] for _ in range(k)]
    num_gt = np.zeros(k, np.int64)
    joint_accs: list[list[mm.MOTAccumulator]] = [[] for _ in range(k)]  # per joint, one per sequence
    person_accs = []
    outcomes = dict.fromkeys(JOINT_OUTCOMES, 0)
    for gts, preds in sequences:
        seq_joint_accs = [mm.MOTAccumulator(auto_id=True) for _ in range(k)]
        person_acc = mm.MOTAccumulator(auto_id=True)
        for gt, pred in zip(gts, preds):
            if not gt.labelled:
                continue
            keep = np.isfinite(head_sizes(gt)) & (gt.keypoints[:, :, 2] > 0).any(1)
            gt = gt.select(keep)
            dist = pckh_distances(gt, pred)  # [n, m, K]
            correct = np.nan_to_num(dist, nan=np.inf) <= 0.5
            pairs = dict((p, g) for g, p in _pair_people(correct))
            labelled = gt.keypoints[:, :, 2] > 0
            num_gt += labelled.sum(0)
            _count_outcomes(outcomes, labelled, correct, pred.keypoint_scores >= keypoint_thr, pairs)
            for j in range(k):
                tp = np.array([p in pairs and bool(correct[pairs[p], p, j]) for p in range(len(pred.track_ids))])
                joint_scores[j].append(pred.keypoint_scores[:, j])
                joint_tp[j].append(tp.astype(bool).reshape(-1))
                objs = np.nonzero(labelled[:, j])[0]
                hyps = np.nonzero(pred.keypoint_scores[:, j] >= keypoint_thr)[0]
                d = dist[objs][:, hyps, j]
                d = np.where(d <= 0.5, d, np.nan)
                seq_joint_accs[j].update(gt.track_ids[objs].tolist(), pred.track_ids[hyps].tolist(), d)
            sim = oks_matrix(pred.keypoints, gt.keypoints[:, :, :2], layout.sigmas, labelled)  # [m, n]
            person_d = np.where(sim.T >= 0.5, 1.0 - sim.T, np.nan)
            person_acc.update(gt.track_ids.tolist(), pred.track_ids.tolist(), person_d)
        person_accs.append(person_acc)
        for j in range(k):
            joint_accs[j].append(seq_joint_accs[j])
    total = max(sum(v for key, v in outcomes.items() if key != "extra_shown"), 1)
    return {**_summarise(joint_scores, joint_tp, num_gt, joint_accs, person_accs, layout),
            "joint_outcomes": {key: round(v / total, 4) for key, v in outcomes.items()}}


JOINT_OUTCOMES = ("unpaired", "hidden_right", "hidden_wrong", "shown_wrong", "shown_right", "extra_shown")


def _count_outcomes(counts: dict, labelled: np.ndarray, correct: np.ndarray, shown: np.ndarray,
                    pairs: dict[int, int]) -> None:
    """Add one frame's labelled joints to ``counts``: labelled [n, K], correct [n, m, K], shown [m, K]
    (score >= keypoint_thr), ``pairs`` prediction -> ground-truth person."""
    paired = np.zeros(labelled.shape, bool)
    right = np.zeros(labelled.shape, bool)
    on = np.zeros(labelled.shape, bool)
    for p, g in pairs.items():
        paired[g], right[g], on[g] = True, correct[g, p], shown[p]
    for key, mask in (("unpaired", ~paired), ("hidden_right", paired & ~on & right),
                      ("hidden_wrong", paired & ~on & ~right), ("shown_wrong", paired & on & ~right),
                      ("shown_right", paired & on & right)):
        counts[key] += int((mask & labelled).sum())
    counts["extra_shown"] += int(np.delete(shown, list(pairs), axis=0).sum())


def _summarise(joint_scores, joint_tp, num_gt, joint_accs, person_accs, layout: KeypointLayout) -> dict:
    mh = mm.metrics.create()
    k = layout.num_keypoints
    ap = [_average_precision(np.concatenate(joint_scores[j]) if joint_scores[j] else np.zeros(0),
                             np.concatenate(joint_tp[j]) if joint_tp[j] else np.zeros(0, bool), int(num_gt[j]))
          for j in range(k)]
    counts = {"misses": 0, "false_positives": 0, "switches": 0, "objects": 0}
    mota_joint, objects_joint = [], []
    for j in range(k):
        accs = joint_accs[j]
        if num_gt[j] == 0 or not accs:
            mota_joint.append(float("nan"))
            objects_joint.append(0)
            continue
        s = mh.compute_many(accs, metrics=["num_misses", "num_false_positives", "num_switches", "num_objects"],
                            generate_overall=True).loc["OVERALL"]
        for key in counts:
            counts[key] += int(s[f"num_{key}"])
        mota_joint.append(1.0 - (s["num_misses"] + s["num_false_positives"] + s["num_switches"]) / s["num_objects"])
        objects_joint.append(int(s["num_objects"]))
    mota = 1.0 - (counts["misses"] + counts["false_positives"] + counts["switches"]) / max(counts["objects"], 1)
    if not person_accs:
        person_accs = [mm.MOTAccumulator(auto_id=True)]
    person = mh.compute_many(person_accs, metrics=["idf1", "num_switches", "mota", "num_unique_objects"],
                             generate_overall=True).loc["OVERALL"]
    names = layout.keypoints
    return {
        "pck_ap": float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0,
        "mota": float(mota),
        "idf1": float(person["idf1"]) if np.isfinite(person["idf1"]) else 0.0,
        "id_switches": int(person["num_switches"]),
        "mota_person": float(person["mota"]),
        "num_gt_tracks": int(person["num_unique_objects"]),
        "ap_per_joint": {names[j]: round(float(ap[j]), 4) for j in range(k)},
        "mota_per_joint": {names[j]: round(float(mota_joint[j]), 4) for j in range(k)},
        "objects_per_joint": {names[j]: objects_joint[j] for j in range(k)},  # MOTA = their weighted mean
        "joint_counts": counts,
    }
