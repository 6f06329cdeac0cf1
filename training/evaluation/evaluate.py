"""Validation during training: pose quality of the last decoder layer on a fixed set.

Mean OKS (unmatched people count as 0), recall and precision at OKS 0.5, from a one-to-one
assignment of predictions above a score threshold to people. The full benchmark metrics (COCO
AP with pycocotools, MOTA/IDF1 with motmetrics) are ``pavenet-eval``'s job.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.data.dataset import ClipDataset, collate
from training.objective.losses import oks
from training.objective.matcher import Targets, assign


def match_oks(pred: torch.Tensor, tgt: Targets, sigmas: torch.Tensor) -> np.ndarray:
    """OKS of each person's assigned prediction ([G], 0 when unassigned); pred [P, K, 2]."""
    if len(tgt) == 0:
        return np.zeros(0)
    if len(pred) == 0:
        return np.zeros(len(tgt))
    sim = oks(pred.float(), tgt.keypoints, tgt.visible, tgt.area, sigmas).cpu().numpy()  # [P, G]
    rows, cols = assign(1 - sim)
    out = np.zeros(len(tgt))
    out[cols] = sim[rows, cols]
    return out


SWEEP = tuple(round(0.05 * i, 2) for i in range(1, 15))  # score thresholds 0.05 .. 0.70


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: ClipDataset, sigmas: torch.Tensor, device: torch.device,
             batch_size: int = 8, score_thr: float = 0.3) -> dict[str, float]:
    """Run the model on every frame of ``dataset`` and score its poses.

    Returns mean OKS / recall / precision at OKS 0.5 for predictions scoring >= ``score_thr``;
    ``best_query_oks`` (each person's best OKS over all queries: pose quality regardless of
    scores) and the same for every stage (``best_query_oks_enc``, ``_d0``, ..., ``_r0``, ...);
    and the best F1 at OKS 0.5 over a sweep of score thresholds with that threshold
    (what the tracker's ``new_track_thr`` should be for this model).
    """
    was_training = model.training
    model.eval()
    sigmas = sigmas.to(device)
    people, best_query = 0, []
    per_stage: dict[str, list[np.ndarray]] = {}
    hits = dict.fromkeys((score_thr, *SWEEP), 0)
    preds = dict.fromkeys(hits, 0)
    oks_sum = 0.0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        for t, frame_targets in enumerate(batch["targets"]):
            out = model(batch["images"][:, t].to(device).float())
            scores = out["scores"][-1].sigmoid()
            refined = out.get("refine_keypoints")
            final = refined[-1] if refined is not None and len(refined) else out["keypoints"][-1]
            for b, tgt in enumerate(frame_targets):
                tgt = tgt.to(device)
                people += len(tgt)
                if len(tgt):
                    sim = oks(final[b].float(), tgt.keypoints, tgt.visible, tgt.area, sigmas)
                    best_query.append(sim.max(0).values.cpu().numpy())
                    for name, kps in stage_poses(out, b):
                        stage = oks(kps.float(), tgt.keypoints, tgt.visible, tgt.area, sigmas)
                        per_stage.setdefault(name, []).append(stage.max(0).values.cpu().numpy())
                for thr in hits:
                    keep = scores[b] >= thr
                    matched = match_oks(final[b][keep], tgt, sigmas)
                    hits[thr] += int((matched >= 0.5).sum())
                    preds[thr] += int(keep.sum())
                    if thr == score_thr:
                        oks_sum += float(matched.sum())
    model.train(was_training)
    n = max(people, 1)

    def f1(thr: float) -> float:
        p, r = hits[thr] / max(preds[thr], 1), hits[thr] / n
        return 2 * p * r / max(p + r, 1e-9)

    best_thr = max(SWEEP, key=f1)
    return {"mean_oks": oks_sum / n, "recall_oks50": hits[score_thr] / n,
            "precision_oks50": hits[score_thr] / max(preds[score_thr], 1), "num_people": people,
            "num_pred": preds[score_thr],
            "best_query_oks": float(np.concatenate(best_query).mean()) if best_query else 0.0,
            "f1_best": f1(best_thr), "thr_best": best_thr,
            **{f"best_query_oks_{k}": float(np.concatenate(v).mean()) for k, v in per_stage.items()}}


def stage_poses(out: dict, b: int):
    """(name, [N, K, 2] poses of image b) of every stage: ``enc`` (the proposals), ``d0``, ``d1``,
    ... (decoder layers) and ``r0``, ``r1``, ... (refinement layers): a stage that adds nothing
    shows as an equal best-query OKS in the log."""
    yield "enc", out["enc_keypoints"][b]
    for layer in range(out["keypoints"].shape[0]):
        yield f"d{layer}", out["keypoints"][layer, b]
    refined = out.get("refine_keypoints")
    for layer in range(0 if refined is None else refined.shape[0]):
        yield f"r{layer}", refined[layer, b]
