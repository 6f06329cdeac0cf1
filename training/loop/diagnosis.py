"""The troubleshooting table of docs/training-log.md as live checks.

``RULES`` reads like the guide's table: symptom, likely cause, fix (the guide's words), plus the
check that detects it on the ``train`` log lines. :class:`Diagnoser` runs every rule on each new
line and reports each diagnosis once; ``pavenet-train`` prints it and writes a
``{"mode": "diagnosis", ...}`` line to ``log.jsonl``; ``pavenet-report`` runs the same rules on a
finished (or running) log.

Checks look at the mean (``grad_norm``: the median) of the last ``window`` steps of log lines, and the tracking and loss
rules only after ``after`` steps (cold starts look broken for a while by design).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class DiagnosisConfig:
    """Thresholds of the rules (``--set diag_<name>=...`` in pavenet-train).

    Attributes:
        after: steps before the tracking and loss rules apply (warm-up, cold start).
        window: steps of log lines averaged by every rule.
        id_con: ``trk_id_con`` below this is low (the guide: < 0.5).
        grad_norm: ``grad_norm`` above this is exploding (the guide: > 200).
        memory_mb: ``memory`` (MB) above this risks OOM (the guide: > 20 GB); pavenet-train's default
            0 means 20 GB, or 90 % of the device's memory when that is smaller.
        patience: steps without a ``min_delta`` improvement of ``loss_kpt`` before it is "not improving".
        min_delta: the improvement of the windowed ``loss_kpt`` that counts.
        l1_ratio: ``trk_kpt_l1`` above this many times ``det_kpt_l1`` is "much higher".
        tracking: the run trains track queries (clips of >= 2 frames); single-frame runs skip the
            track-query rules.
    """

    after: int = 300
    window: int = 100
    id_con: float = 0.5
    grad_norm: float = 200.0
    memory_mb: float = 20000.0
    patience: int = 1000
    min_delta: float = 0.05
    l1_ratio: float = 3.0
    tracking: bool = True

    @classmethod
    def from_train_config(cls, cfg) -> DiagnosisConfig:
        """Reads the ``diag_*`` fields of a :class:`training.config.TrainConfig`."""
        values = {f.name: getattr(cfg, f"diag_{f.name}") for f in fields(cls) if hasattr(cfg, f"diag_{f.name}")}
        return cls(**values, tracking=getattr(cfg, "seq_length", 2) >= 2)


@dataclass(frozen=True)
class Rule:
    name: str
    symptom: str
    cause: str
    fix: str
    check: Callable[[History, DiagnosisConfig], float | None]  # the offending value, or None when healthy
    expected: bool = False  # the guide calls it expected: reported as information, not as a fault


@dataclass(frozen=True)
class Diagnosis:
    rule: str
    symptom: str
    cause: str
    fix: str
    value: float
    step: int
    expected: bool

    def record(self, epoch: int, it: int) -> dict:
        return {"mode": "diagnosis", "epoch": epoch, "iter": it, "step": self.step, "rule": self.rule,
                "level": "info" if self.expected else "warning", "symptom": self.symptom,
                "value": round(float(self.value), 6), "cause": self.cause, "fix": self.fix}

    def message(self) -> str:
        kind = "note (expected)" if self.expected else "diagnosis"
        return (f"{kind} at step {self.step}: {self.symptom} (now {self.value:.4g}). Likely cause: {self.cause}. "
                f"Fix: {self.fix}")


class History:
    """The recent ``train`` lines with their global step."""

    def __init__(self, maxlen: int = 2000):
        self.lines: deque[tuple[int, dict]] = deque(maxlen=maxlen)
        self.best_kpt: tuple[int, float] | None = None  # (step, best windowed loss_kpt)

    @property
    def step(self) -> int:
        return self.lines[-1][0] if self.lines else 0

    def mean(self, key: str, window: int, reduce=np.mean) -> float | None:
        """Mean (or ``reduce``) of ``key`` over the lines of the last ``window`` steps (None when never logged)."""
        if not self.lines:
            return None
        values = [r[key] for s, r in self.lines if s > self.step - window and key in r]
        return float(reduce(values)) if values else None


def _after(h: History, c: DiagnosisConfig) -> bool:
    return h.step >= c.after


def _n_trk_pos_zero(h: History, c: DiagnosisConfig) -> float | None:
    v = h.mean("n_trk_pos", c.window)
    return v if c.tracking and _after(h, c) and v is not None and v == 0.0 else None


def _id_con_low(h: History, c: DiagnosisConfig) -> float | None:
    v, pos = h.mean("trk_id_con", c.window), h.mean("n_trk_pos", c.window)
    if pos == 0.0:
        return None  # no track query matches at all: the n_trk_pos rule names the root cause
    return v if _after(h, c) and v is not None and v < c.id_con else None


def _kpt_stuck(h: History, c: DiagnosisConfig) -> float | None:
    v = h.mean("loss_kpt", c.window)
    if v is None or h.step < c.after:
        return None
    if h.best_kpt is None or v < h.best_kpt[1] - c.min_delta:
        h.best_kpt = (h.step, v)
        return None
    return v if h.step - h.best_kpt[0] >= c.patience else None


def _grad_norm_high(h: History, c: DiagnosisConfig) -> float | None:
    if h.step - h.lines[0][0] < c.window // 2:
        return None  # a few noisy first steps are not a trend
    v = h.mean("grad_norm", c.window, np.median)  # the median: one spike is not "exploding"
    return v if v is not None and v > c.grad_norm else None


def _memory_high(h: History, c: DiagnosisConfig) -> float | None:
    v = h.lines[-1][1].get("memory") if h.lines else None
    return float(v) if v is not None and v > c.memory_mb else None


def _refine_not_better(h: History, c: DiagnosisConfig) -> float | None:
    refine = [k for k in (h.lines[-1][1] if h.lines else {}) if k.endswith("loss_kpt_refine")]
    base = h.mean("loss_kpt", c.window)
    if not refine or base is None or not _after(h, c):
        return None
    last = h.mean(sorted(refine)[-1], c.window)
    return last - base if last is not None and last >= base else None


def _trk_l1_high(h: History, c: DiagnosisConfig) -> float | None:
    trk, det = h.mean("trk_kpt_l1", c.window), h.mean("det_kpt_l1", c.window)
    return trk / det if trk and det and trk > c.l1_ratio * det else None


RULES: list[Rule] = [
    Rule("n_trk_pos_zero", "n_trk_pos stays 0.0 after warm-up", "Track bonus not applied (no propagated identity "
         "reaches the matcher)", "Check prev_track_gt_ids (should be >= 0): track_assignment, track_bonus, "
         "seq_length >= 2 and track_drop < 1", _n_trk_pos_zero),
    Rule("trk_id_con_low", "trk_id_con low (< 0.5) after warm-up", "Track queries not re-matching people",
         "Increase track_bonus or improve track query initialization", _id_con_low),
    Rule("loss_kpt_stuck", "loss_kpt not improving", "Keypoint regression stuck", "Check learning rate, gradient "
         "clipping", _kpt_stuck),
    Rule("grad_norm_high", "grad_norm > 200", "Exploding gradients", "Reduce learning rate or batch size",
         _grad_norm_high),
    Rule("memory_high", "memory > 20GB", "OOM risk", "Reduce batch size or enable gradient checkpointing "
         "(grad_frames=1 keeps earlier frames of a clip out of memory)", _memory_high),
    Rule("refine_not_better", "refinement losses not better than loss_kpt after warm-up", "The refinement stage "
         "is not using its frame context", "Check refine_layers and the decoder window; train longer before "
         "judging", _refine_not_better),
    Rule("trk_kpt_l1_high", "trk_kpt_l1 >> det_kpt_l1", "Track queries poorly initialized", "This is expected; "
         "will improve as detector improves", _trk_l1_high, expected=True),
]


class Diagnoser:
    """Runs :data:`RULES` on each ``train`` line; every rule fires at most once per run."""

    def __init__(self, cfg: DiagnosisConfig | None = None, rules: list[Rule] | None = None):
        self.cfg = cfg or DiagnosisConfig()
        self.rules = rules if rules is not None else RULES
        self.history = History()
        self.raised: dict[str, Diagnosis] = {}

    def update(self, step: int, record: dict) -> list[Diagnosis]:
        """Add the line logged at global ``step``; returns the diagnoses raised by it."""
        if record.get("mode", "train") != "train":
            return []
        self.history.lines.append((step, record))
        new = []
        for rule in self.rules:
            if rule.name in self.raised:
                continue
            value = rule.check(self.history, self.cfg)
            if value is not None:
                d = Diagnosis(rule.name, rule.symptom, rule.cause, rule.fix, float(value), step, rule.expected)
                self.raised[rule.name] = d
                new.append(d)
        return new


def diagnose_log(records: list[dict], cfg: DiagnosisConfig | None = None) -> list[Diagnosis]:
    """Every diagnosis the rules raise over a whole log (its ``train`` lines, in order); the global
    step is rebuilt from ``epoch`` and ``iter``."""
    diag, out = Diagnoser(cfg), []
    offset, epoch, last_iter = 0, None, 0
    for r in records:
        if r.get("mode") != "train":
            continue
        if epoch is not None and r["epoch"] != epoch:
            offset += last_iter
        epoch, last_iter = r["epoch"], r["iter"]
        out += diag.update(offset + r["iter"], r)
    return out
