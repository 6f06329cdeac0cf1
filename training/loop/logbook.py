"""A run's log: ``log.jsonl`` lines (docs/training-log.md names and order), optional TensorBoard
scalars, the live diagnosis, and the running sums of a log interval."""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from pavenet.errors import PavenetError
from training.loop.diagnosis import Diagnoser
from training.objective.tracking import diagnostic_values


def log_key_order(key: str) -> tuple:
    """The log order of docs/training-log.md: encoder, last layer, d0, d1, ..., then diagnostics."""
    layer = re.match(r"d(\d+)\.", key)
    if key.startswith("enc_"):
        return (0, 0, key)
    if key.startswith("loss_"):
        return (1, 0, key)
    if layer:
        return (2, "refine" in key, int(layer.group(1)), key)
    return (3, 0, key)


class IntervalMeter:
    """Sums of one log interval. Losses stay device tensors until :meth:`record` reads them (one
    host copy per log line, not per step)."""

    def __init__(self):
        self.losses: dict[str, torch.Tensor | float] = defaultdict(float)
        self.diag: dict[str, torch.Tensor | float] = defaultdict(float)
        self.data_time = 0.0
        self.grad_norm = 0.0
        self.micro = 0  # forward/backward passes (accumulation micro-batches)
        self.steps = 0  # optimizer steps

    def add_micro(self, losses: dict, diag: dict, data_time: float) -> None:
        for k, v in losses.items():
            self.losses[k] += v.detach()
        for k, v in diag.items():
            self.diag[k] += v
        self.data_time += data_time
        self.micro += 1

    def add_step(self, grad_norm: float) -> None:
        self.grad_norm += grad_norm
        self.steps += 1

    def record(self, epoch: int, it: int, lr: float, secs_per_step: float, memory_mb: float) -> dict:
        """The ``train`` log line of the interval (means per micro-batch; grad_norm per step)."""
        record = {"mode": "train", "epoch": epoch, "iter": it, "lr": lr}
        keys = sorted((k for k in self.losses if k != "loss"), key=log_key_order)
        record.update({k: float(self.losses[k]) / self.micro for k in keys})
        record.update(diagnostic_values(self.diag))
        record["loss"] = float(self.losses["loss"]) / self.micro
        record["grad_norm"] = self.grad_norm / self.steps
        record["memory"] = round(memory_mb)
        record["time"] = secs_per_step
        record["data_time"] = self.data_time / self.micro
        return record


class RunLog:
    """Writes log lines (main process only), mirrors them to TensorBoard, and runs the diagnosis."""

    def __init__(self, work_dir: Path, main: bool, diagnoser: Diagnoser, tensorboard: bool = False):
        self.path = work_dir / "log.jsonl"
        self.main, self.diagnoser = main, diagnoser
        self.tb = None
        if main:
            self._seed_diagnoses()
            if tensorboard:
                self.tb = open_tensorboard(work_dir / "tensorboard")

    def write(self, record: dict, step: int) -> None:
        if not self.main:
            return
        line = json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.tb is not None and record["mode"] in ("train", "val"):
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "iter"):
                    self.tb.add_scalar(f"{record['mode']}/{k}", v, step)

    def diagnose(self, record: dict, step: int) -> None:
        """The troubleshooting table of docs/training-log.md, live: each symptom reported once
        (console + log line)."""
        if not self.main:
            return
        for d in self.diagnoser.update(step, record):
            tqdm.write(("note" if d.expected else "warning") + ": " + d.message(), file=sys.stderr)
            self.write(d.record(record["epoch"], record["iter"]), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def _seed_diagnoses(self) -> None:
        """On resume: diagnoses already in the log are not raised again."""
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("mode") == "diagnosis":
                self.diagnoser.raised[r["rule"]] = r


def open_tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PavenetError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(folder))
