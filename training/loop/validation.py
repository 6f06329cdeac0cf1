"""Validation during a run: the fixed val clips scored by :func:`training.evaluation.evaluate.evaluate`,
a console line, and the best score so far (which decides ``best.pt``)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from training.data.dataset import ClipDataset
from training.evaluation.evaluate import evaluate


class Validator:
    """Scores a model on ``val_set``; :meth:`is_best` keeps the best F1 at OKS 0.5 (threshold-free
    enough: scores drift while a model trains)."""

    def __init__(self, val_set: ClipDataset, sigmas: torch.Tensor, device: torch.device, batch_size: int,
                 best: float = -1.0):
        self.val_set, self.sigmas, self.device, self.batch_size = val_set, sigmas, device, batch_size
        self.best = best

    def __call__(self, model: torch.nn.Module, epoch: int) -> dict:
        m = evaluate(model, self.val_set, self.sigmas, self.device, self.batch_size)
        tqdm.write(f"val epoch {epoch}: mean OKS {m['mean_oks']:.3f}, recall@OKS0.5 {m['recall_oks50']:.3f}, "
                   f"precision@OKS0.5 {m['precision_oks50']:.3f}, best-query OKS {m['best_query_oks']:.3f}, "
                   f"best F1 {m['f1_best']:.3f} at score {m['thr_best']}")
        return m

    def is_best(self, metrics: dict) -> bool:
        if metrics["f1_best"] > self.best:
            self.best = metrics["f1_best"]
            return True
        return False
