"""Checkpoints: atomic writes, safe loading (``weights_only=True``), and clear errors.

A checkpoint is a dict of tensors and plain values:
``format``, ``version``, ``model`` (state dict), ``criterion`` (the RLE flows), ``optimizer``,
``scheduler``, ``step``, ``epoch``, ``rng`` (torch CPU/CUDA generator states),
``model_config``, ``train_config``, ``layout`` (JSON of the keypoint layout), ``metrics``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from pavenet.errors import PavenetError
from pavenet.layouts import get_layout
from pavenet.model.config import ModelConfig

FORMAT = "pavenet-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a PAVENet checkpoint; any problem is a one-line :class:`PavenetError`."""
    path = Path(path)
    if not path.exists():
        raise PavenetError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PavenetError(f"{path}: not a readable checkpoint (corrupt or not a torch file: {first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PavenetError(f"{path}: not a PAVENet checkpoint (no '{FORMAT}' format tag)")
    if state.get("version", 0) > VERSION:
        raise PavenetError(f"{path}: checkpoint version {state['version']} is newer than this PAVENet "
                           f"({VERSION}); upgrade pavenet")
    if isinstance(state.get("model"), dict):
        # Older models had per-frame window heads that were never trained (their output was
        # always exactly zero): dropping them loads those checkpoints unchanged.
        state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("decoder.window_heads.")}
    return state


def checkpoint_config(state: dict, path: str | Path = "checkpoint") -> ModelConfig:
    """The model config stored in a checkpoint."""
    try:
        cfg = ModelConfig.from_dict(state["model_config"])
    except KeyError:
        raise PavenetError(f"{path}: checkpoint has no model config") from None
    get_layout(cfg.layout)
    return cfg


# Settings that change no tensor of the model: a checkpoint's weights start a run with other values.
RUN_TIME_KEYS = frozenset({"name", "num_queries", "input_width", "input_height", "refine_top"})


def check_compatible(state: dict, cfg: ModelConfig, path: str | Path,
                     free: frozenset[str] = frozenset({"name"})) -> None:
    """Raise if the checkpoint was made for another architecture or keypoint layout; the config
    keys in ``free`` may differ (e.g. :data:`RUN_TIME_KEYS` when only the weights are taken)."""
    stored = checkpoint_config(state, path)
    if stored.layout != cfg.layout:
        raise PavenetError(f"{path}: checkpoint is for keypoint layout {stored.layout!r}, not {cfg.layout!r}")
    diff = {k: (v, getattr(cfg, k)) for k, v in stored.to_dict().items()
            if k not in free and getattr(cfg, k) != v}
    if diff:
        shown = ", ".join(f"{k}={a!r} (wanted {b!r})" for k, (a, b) in list(diff.items())[:4])
        raise PavenetError(f"{path}: checkpoint of another model config: {shown}")
