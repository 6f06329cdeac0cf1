"""`pavenet-report`'s content: plots of a training log grouped as docs/training-log.md groups
them, and a one-page Markdown summary (latest values against the "typical loss evolution" table,
every diagnosis, a verdict on whether tracking works).

Reads ``log.jsonl`` line by line and tolerates a half-written last line, so it works on a run
that is still going.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from pavenet.errors import DataError
from training.loop.diagnosis import Diagnosis, DiagnosisConfig, diagnose_log

# The "Typical Loss Evolution During Training" table of docs/training-log.md:
# stage -> (enc_cls, enc_kpt, loss_cls, loss_kpt, trk_id_con low/high).
TYPICAL = [
    ("Epoch 1, iter 1 (cold start)", {"enc_loss_cls": 0.4, "enc_loss_kpt": -3.5, "loss_cls": 0.5, "loss_kpt": -1.5,
                                      "trk_id_con": 0.05}),
    ("Epoch 1, iter 500", {"enc_loss_cls": 0.15, "enc_loss_kpt": -4.6, "loss_cls": 0.2, "loss_kpt": -3.6,
                           "trk_id_con": 0.80}),
    ("Epoch 5 (convergence)", {"enc_loss_cls": 0.08, "enc_loss_kpt": -5.2, "loss_cls": 0.1, "loss_kpt": -4.0,
                               "trk_id_con": 0.885}),
    ("Epoch 10 (near convergence)", {"enc_loss_cls": 0.05, "enc_loss_kpt": -5.5, "loss_cls": 0.08,
                                     "loss_kpt": -4.2, "trk_id_con": 0.90}),
]
TYPICAL_KEYS = ["enc_loss_cls", "enc_loss_kpt", "loss_cls", "loss_kpt", "trk_id_con"]


@dataclass
class Log:
    train: list[dict]
    val: list[dict]
    diagnoses: list[dict]  # the "diagnosis" lines written live
    steps: np.ndarray  # [len(train)] global step of each train line
    config: dict | None  # the run's config.json, when next to the log

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a train key, skipping lines without it."""
        pts = [(s, r[key]) for s, r in zip(self.steps, self.train) if isinstance(r.get(key), (int, float))]
        if not pts:
            return np.zeros(0), np.zeros(0)
        s, v = zip(*pts)
        return np.asarray(s), np.asarray(v, float)

    @property
    def keys(self) -> list[str]:
        """Every numeric train key, in logged order."""
        return _numeric_keys(self.train)

    @property
    def val_keys(self) -> list[str]:
        return _numeric_keys(self.val)


def _numeric_keys(records: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in ("mode", "epoch", "iter") and isinstance(v, (int, float)):
                seen.setdefault(k)
    return list(seen)


def read_log(path: str | Path) -> Log:
    """Parse ``log.jsonl`` (a broken last line of a running job is ignored; a broken line elsewhere is an error)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise DataError(path, "no such training log")
    lines = path.read_text(encoding="utf-8").splitlines()
    train, val, diagnoses = [], [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break  # being written right now
            raise DataError(path, f"line {n} is not JSON") from None
        {"train": train, "val": val, "diagnosis": diagnoses}.get(r.get("mode"), []).append(r)
    if not train:
        raise DataError(path, "holds no 'train' lines yet")
    steps, offset, epoch, last = [], 0, None, 0
    for r in train:
        if epoch is not None and r["epoch"] != epoch:
            offset += last
        epoch, last = r["epoch"], r["iter"]
        steps.append(offset + r["iter"])
    cfg_path = path.parent / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
    return Log(train, val, diagnoses, np.asarray(steps), config)


def _layer_keys(keys: list[str], suffix: str) -> list[str]:
    """``d0.<suffix>``, ``d1.<suffix>``, ..., then the last layer's ``<suffix>``."""
    layered = sorted((k for k in keys if re.fullmatch(rf"d\d+\.{re.escape(suffix)}", k)),
                     key=lambda k: int(k[1:k.index(".")]))
    return layered + ([suffix] if suffix in keys else [])


def groups(log: Log) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """Figure name -> panels (title, keys), in the order of docs/training-log.md; keys no group
    claims go to "other", so every logged key is plotted."""
    keys = log.keys
    refine = sorted(k for k in keys if k.endswith("loss_kpt_refine"))
    refine_oks = sorted(k for k in keys if k.endswith("loss_oks_refine"))
    out = [
        ("encoder", [("Encoder classification", ["enc_loss_cls"]), ("Encoder keypoints (RLE)", ["enc_loss_kpt"])]),
        ("decoder", [("Decoder classification per layer", _layer_keys(keys, "loss_cls")),
                     ("Decoder keypoints per layer (RLE)", _layer_keys(keys, "loss_kpt")),
                     ("Decoder OKS loss per layer", _layer_keys(keys, "loss_oks"))]),
        ("refinement", [("Refinement vs base keypoint loss", [*refine, "loss_kpt"]),
                        ("Refinement OKS loss vs the last decoder layer's", [*refine_oks, "loss_oks"])]),
        ("tracking", [("Keypoint L1: track vs detect queries", ["trk_kpt_l1", "det_kpt_l1"]),
                      ("Queries per image", ["n_trk", "n_trk_pos", "n_det_pos"]),
                      ("Track matching n_trk_pos / n_trk", ["n_trk_pos/n_trk"]),
                      ("ID consistency trk_id_con", ["trk_id_con"])]),
        ("loss", [("Overall loss", ["loss"])]),
        ("optimisation", [("grad_norm (before clipping)", ["grad_norm"]), ("Learning rate", ["lr"])]),
        ("resources", [("memory (MB)", ["memory"]), ("time per iteration (s)", ["time", "data_time"])]),
    ]
    claimed = {k for _, panels in out for _, ks in panels for k in ks}
    other = [k for k in keys if k not in claimed]
    if other:
        out.append(("other", [(k, [k]) for k in other]))
    return [(name, [(t, [k for k in ks if k in keys or k == "n_trk_pos/n_trk"]) for t, ks in panels
                    if any(k in keys for k in ks) or (ks == ["n_trk_pos/n_trk"] and "n_trk" in keys)])
            for name, panels in out if any(any(k in keys for k in ks) for _, ks in panels)]


def _smooth(v: np.ndarray, n: int) -> np.ndarray:
    if len(v) < 3 or n < 2:
        return v
    n = min(n, len(v))
    kernel = np.ones(n) / n
    padded = np.concatenate([np.full(n // 2, v[0]), v, np.full(n - 1 - n // 2, v[-1])])
    return np.convolve(padded, kernel, mode="valid")


def _ratio(log: Log) -> tuple[np.ndarray, np.ndarray]:
    s, pos = log.series("n_trk_pos")
    _, trk = log.series("n_trk")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(trk > 0, pos / np.maximum(trk, 1e-9), np.nan)
    return s, r


def plot(log: Log, out: Path, smooth: int = 10) -> list[Path]:
    """One PNG per group (plus ``validation.png``); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, panels in groups(log):
        cols = min(len(panels), 2)
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), dpi=80, squeeze=False)
        for ax, (title, keys) in zip(axes.flat, panels):
            for k in keys:
                s, v = _ratio(log) if k == "n_trk_pos/n_trk" else log.series(k)
                if not len(v):
                    continue
                line, = ax.plot(s, _smooth(v, smooth), label=k, lw=1.5)
                ax.plot(s, v, color=line.get_color(), alpha=0.2, lw=0.8)
            if keys == ["grad_norm"]:
                ax.axhline(200, color="red", ls="--", lw=1, label="200 (exploding)")
            if keys == ["trk_id_con"]:
                ax.axhline(0.5, color="red", ls="--", lw=1, label="0.5 (low)")
                ax.axhline(0.7, color="green", ls=":", lw=1, label="0.7 (good)")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        files.append(path)
    if log.val:
        keys = log.val_keys
        metric_keys = [k for k in keys if not k.startswith("num_") and k != "thr_best"]
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=80)
        steps = [r["iter"] for r in log.val]
        for k in metric_keys:
            ax.plot(steps, [r.get(k, np.nan) for r in log.val], marker="o", label=k)
        ax.set_title("Validation")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "validation.png"
        fig.savefig(path)
        plt.close(fig)
        files.append(path)
    return files


def _latest(log: Log, key: str, window: int = 10) -> float | None:
    _, v = log.series(key)
    return float(np.mean(v[-window:])) if len(v) else None


def _stage(key: str, value: float) -> str:
    """Where ``value`` sits in the typical-evolution table (which stages it lies between)."""
    ref = [(name, row[key]) for name, row in TYPICAL]
    better_is_lower = key != "trk_id_con"
    ordered = [(n, v if better_is_lower else -v) for n, v in ref]
    x = value if better_is_lower else -value
    if x >= ordered[0][1]:
        return f"at or before '{ordered[0][0]}'"
    for (n0, v0), (n1, v1) in pairwise(ordered):
        if v1 <= x < v0:
            return f"between '{n0}' and '{n1}'"
    return f"beyond '{ordered[-1][0]}'"


def tracking_verdict(log: Log) -> tuple[bool, str]:
    """Is tracking working? (the example analysis of docs/training-log.md: trk_id_con > 0.7 and
    track queries matching)."""
    con, trk, pos = _latest(log, "trk_id_con", 20), _latest(log, "n_trk", 20), _latest(log, "n_trk_pos", 20)
    if con is None or trk is None or pos is None:
        return False, "tracking is NOT measured: no tracking diagnostics in this log (single-frame training?)"
    if trk == 0:
        return False, "tracking is NOT working: n_trk is 0, no query is propagated (the tracking mechanism is off)"
    ratio = pos / trk
    ok = con > 0.7 and pos > 0
    word = "working" if ok else "NOT working"
    return ok, (f"tracking is {word}: trk_id_con {con:.2f} ({'> 0.7, good' if con > 0.7 else '<= 0.7'}), "
                f"n_trk_pos / n_trk = {pos:.2f} / {trk:.2f} = {ratio:.0%} of propagated queries re-match a person")


def summary_markdown(log: Log, diagnoses: list[Diagnosis], images: list[Path], title: str) -> str:
    """The one-page summary."""
    ok, verdict = tracking_verdict(log)
    last = log.train[-1]
    lines = [f"# Training report: {title}", "",
             f"Step {int(log.steps[-1])} (epoch {last['epoch']}, iter {last['iter']}), {len(log.train)} train lines, "
             f"{len(log.val)} validation lines.", "",
             f"**{'✅' if ok else '⚠️'} {verdict[0].upper() + verdict[1:]}.**", ""]
    cls_target = ((log.config or {}).get("train") or {}).get("cls_target")
    lines += ["## Against the typical loss evolution", "",
              "Latest values (mean of the last 10 lines) placed in the table of docs/training-log.md.", "",
              "| key | latest | " + " | ".join(n for n, _ in TYPICAL) + " | where |",
              "|---|---|" + "---|" * len(TYPICAL) + "---|"]
    for k in TYPICAL_KEYS:
        v = _latest(log, k)
        if v is None:
            continue
        refs = " | ".join(f"{row[k]:g}" for _, row in TYPICAL)
        lines.append(f"| `{k}` | {v:.4g} | {refs} | {_stage(k, v)} |")
    if cls_target == "oks":
        lines += ["", "Note: this run trains scores with the varifocal loss towards each pose's OKS "
                      "(`cls_target=oks`), so `*loss_cls` values are not on the table's focal-loss scale."]
    lines += ["", "## Diagnoses", ""]
    if diagnoses:
        lines += ["| step | level | symptom | value | likely cause | fix |", "|---|---|---|---|---|---|"]
        for d in diagnoses:
            level = "info (expected)" if d.expected else "warning"
            lines.append(f"| {d.step} | {level} | {d.symptom} | {d.value:.4g} | {d.cause} | {d.fix} |")
    else:
        lines.append("None: no symptom of the troubleshooting table was seen.")
    lines += ["", "## Every logged key", "", "| key | latest | mean of last 10 | min | max |", "|---|---|---|---|---|"]
    for k in log.keys:
        _, v = log.series(k)
        lines.append(f"| `{k}` | {v[-1]:.6g} | {np.mean(v[-10:]):.6g} | {v.min():.6g} | {v.max():.6g} |")
    if log.val:
        lines += ["", "## Validation", "", "| step | " + " | ".join(log.val_keys) + " |",
                  "|---|" + "---|" * len(log.val_keys)]
        for r in log.val:
            lines.append(f"| {r['iter']} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k in log.val_keys) + " |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def make_report(log_path: str | Path, out: str | Path | None = None, cfg: DiagnosisConfig | None = None
                ) -> tuple[Path, list[Path], list[Diagnosis]]:
    """Write the plots and ``summary.md`` into ``out`` (default: ``report/`` next to the log)."""
    log = read_log(log_path)
    base = Path(log_path) if Path(log_path).is_dir() else Path(log_path).parent
    out = Path(out) if out else base / "report"
    images = plot(log, out)
    diagnoses = diagnose_log(log.train, cfg)
    summary = out / "summary.md"
    tmp = summary.with_name(".summary.md.partial")
    tmp.write_text(summary_markdown(log, diagnoses, images, base.name), encoding="utf-8")
    tmp.replace(summary)
    return summary, images, diagnoses
