"""A run's checkpoints: atomic saves (``last.pt``, ``best.pt``, the newest ``epoch_N.pt``), and
weights loaded into a new run (``--load-from``) or a resumed one (``--resume``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pavenet.errors import PavenetError
from pavenet.model.checkpoint import (
    RUN_TIME_KEYS,
    check_compatible,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from pavenet.model.config import ModelConfig
from training.loop.widen import widen_light_backbone


class RunCheckpoints:
    """Writes checkpoints into ``work_dir`` (only on the main process of a distributed run)."""

    def __init__(self, work_dir: Path, main: bool, keep_epochs: int):
        self.work_dir, self.main, self.keep_epochs = work_dir, main, keep_epochs

    def save(self, name: str, state: dict) -> Path:
        path = self.work_dir / name
        if self.main:
            save_checkpoint(path, state)
        return path

    def save_epoch(self, epoch: int, state: dict) -> None:
        """``epoch_N.pt``, keeping the newest ``keep_epochs`` of them."""
        self.save(f"epoch_{epoch}.pt", state)
        old = self.work_dir / f"epoch_{epoch - self.keep_epochs}.pt"
        if self.main and self.keep_epochs > 0 and old.exists():
            old.unlink()


def load_weights(path: str | Path, model: nn.Module, criterion: nn.Module, model_cfg: ModelConfig,
                 partial: bool) -> str | None:
    """Initialise ``model`` and ``criterion`` from a checkpoint of the same architecture, or with
    ``partial`` from any checkpoint of the same layout (tensors whose name and shape match; e.g. a
    detection-stage model into a tracking model, or another input size; a light backbone of a
    larger ``backbone_width`` is first widened from the checkpoint's with the same outputs,
    :mod:`training.loop.widen`). Returns what a partial load took, for the console."""
    state = load_checkpoint(path)
    if not partial:  # the weights fit whatever the input size and number of detect queries
        check_compatible(state, model_cfg, path, RUN_TIME_KEYS)
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
        return None
    stored = checkpoint_config(state, path)
    if stored.layout != model_cfg.layout:
        raise PavenetError(f"{path}: checkpoint is for keypoint layout {stored.layout!r}, "
                           f"not {model_cfg.layout!r}")
    widened = ""
    if (stored.backbone == model_cfg.backbone == "light" and model_cfg.backbone_width > stored.backbone_width):
        state["model"] = widen_light_backbone(state["model"], stored,
                                              stored.override(backbone_width=model_cfg.backbone_width))
        widened = (f"widened the light backbone from width {stored.backbone_width} to "
                   f"{model_cfg.backbone_width} (same outputs; training/loop/widen.py); ")
    counts = []
    for module, key in ((model, "model"), (criterion, "criterion")):
        own = module.state_dict()
        match = {k: v for k, v in state[key].items() if k in own and own[k].shape == v.shape}
        module.load_state_dict(match, strict=False)
        counts.append((len(match), len(own)))
    (m_in, m_all), (c_in, c_all) = counts
    return (f"{widened}initialised {m_in}/{m_all} model and {c_in}/{c_all} criterion tensors from {path}; "
            "the others start new")


def load_resume_state(path: str | Path, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                      model_cfg: ModelConfig, device: torch.device,
                      average: nn.Module | None = None) -> tuple[int, float]:
    """Restore a run exactly (weights, optimizer, random state); returns (step, best val score).
    A run with a weight average (``ema_decay``) stores the trained weights as ``train_model`` and
    the average as ``model``: ``average`` gets the latter (or starts at the trained weights when the
    checkpoint has no average)."""
    state = load_checkpoint(path)
    check_compatible(state, model_cfg, path)
    model.load_state_dict(state.get("train_model", state["model"]))
    if average is not None:
        average.load_state_dict(state["model"] if "train_model" in state else model.state_dict())
    criterion.load_state_dict(state["criterion"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return int(state["step"]), float(state.get("best", -1.0))
