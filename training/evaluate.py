"""Validation during training: pose quality of the last decoder layer on a fixed set.

Mean OKS (unmatched people count as 0), recall and precision at OKS 0.5, from a one-to-one
assignment of predictions above a score threshold to people. The full benchmark metrics (COCO
AP with pycocotools, MOTA/IDF1 with motmetrics) are ``pavenet-eval``'s job.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.data import ClipDataset, collate
from training.losses import oks
from training.matcher import Targets, assign


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


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: ClipDataset, sigmas: torch.Tensor, device: torch.device,
             batch_size: int = 8, score_thr: float = 0.3) -> dict[str, float]:
    """Run the model on every frame of ``dataset`` and score its poses."""
    was_training = model.training
    model.eval()
    per_person, n_pred = [], 0
    sigmas = sigmas.to(device)
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        images = batch["images"]
        for t, frame_targets in enumerate(batch["targets"]):
            out = model(images[:, t].to(device).float())
            scores = out["scores"][-1].sigmoid()
            refined = out.get("refine_keypoints")
            final = refined[-1] if refined is not None and len(refined) else out["keypoints"][-1]
            for b, tgt in enumerate(frame_targets):
                keep = scores[b] >= score_thr
                n_pred += int(keep.sum())
                per_person.append(match_oks(final[b][keep], tgt.to(device), sigmas))
    model.train(was_training)
    sims = np.concatenate(per_person) if per_person else np.zeros(0)
    n_gt = max(len(sims), 1)
    hits = int((sims >= 0.5).sum())
    return {"mean_oks": float(sims.sum() / n_gt), "recall_oks50": hits / n_gt,
            "precision_oks50": hits / max(n_pred, 1), "num_people": int(len(sims)), "num_pred": n_pred}
