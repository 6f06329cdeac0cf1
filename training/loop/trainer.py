"""The training loop: AdamW, warm-up + cosine/step schedule, clipping, accumulation, AMP, DDP,
JSON-lines log, atomic resumable checkpoints and NaN protection."""

from __future__ import annotations

import json
import math
import os
import re
import resource
import sys
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pavenet.errors import PavenetError
from pavenet.layouts import get_layout
from pavenet.model.checkpoint import check_compatible, checkpoint_config, load_checkpoint, save_checkpoint
from pavenet.model.config import ModelConfig
from pavenet.model.pavenet import build_model, param_groups
from pavenet.synth import SynthConfig
from training.config import TrainConfig
from training.data.augment import AugmentConfig
from training.data.dataset import ClipDataset, StepSampler, build_source, collate
from training.evaluation.evaluate import evaluate
from training.loop.diagnosis import Diagnoser, DiagnosisConfig
from training.loop.sequence import TrainStep
from training.objective.criterion import LossConfig, SetCriterion
from training.objective.tracking import TrackRules, diagnostic_values


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join the process group when started by ``torchrun``; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise PavenetError("--device cuda requested but CUDA is not available")
    dev = torch.device(f"cuda:{d.local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return d, dev


def build_criterion(model_cfg: ModelConfig, cfg: TrainConfig) -> SetCriterion:
    """The criterion and track rules a training config describes."""
    loss_cfg = LossConfig(loss_cls=cfg.loss_cls, loss_kpt=cfg.loss_kpt, loss_oks=cfg.loss_oks,
                          cls_target=cfg.cls_target, rle_reduction=cfg.rle_reduction,
                          sigma_relative=model_cfg.sigma_relative, enc_topk=cfg.enc_topk)
    rules = TrackRules(assignment=cfg.track_assignment, bonus=cfg.track_bonus, keep_thr=cfg.track_keep_thr,
                       max_lost=cfg.track_max_lost, drop=cfg.track_drop, fp=cfg.track_fp, reset=cfg.track_reset)
    return SetCriterion(torch.tensor(get_layout(model_cfg.layout).sigmas), model_cfg.decoder_layers, loss_cfg, rules)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (warm-up, then cosine or steps)."""
    if step < cfg.warmup_iters:
        return 0.001 + 0.999 * step / cfg.warmup_iters
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_iters) / max(cfg.total_steps - cfg.warmup_iters, 1)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    epoch = step // cfg.iters_per_epoch
    return 0.1 ** sum(epoch >= e for e in cfg.drop_epochs)


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


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated, or this process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def device_memory_mb(device: torch.device) -> float:
    """Total memory of the training device (the GPU's, or the machine's RAM) in MB."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return float("inf")


class Trainer:
    """Trains one run into ``work_dir`` (``log.jsonl``, ``config.json``, ``last.pt``, ``best.pt``)."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, work_dir: str | Path, device: str = "auto",
                 resume: str | Path | None = None, load_from: str | Path | None = None,
                 backbone_weights: str | None = None,
                 synth: SynthConfig | None = None, progress: bool = True, mark_pretrained: bool = True):
        self.dist, self.device = setup_distributed(device)
        if (backbone_weights or load_from) and not resume and mark_pretrained:
            cfg = cfg.override(pretrained_backbone=True)  # saved with the run, so a resume groups alike
        self.model_cfg, self.cfg, self.work_dir = model_cfg, cfg, Path(work_dir)
        self.progress = progress and self.dist.main
        torch.manual_seed(cfg.seed)
        self.layout = get_layout(model_cfg.layout)
        model = build_model(model_cfg)
        if backbone_weights:
            model.backbone.load_pretrained(backbone_weights)
        criterion = build_criterion(model_cfg, cfg)
        self.step_module = TrainStep(model, criterion, cfg.grad_frames, cfg.track_feed).to(self.device)
        groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.low_lr_factor,
                              pretrained_backbone=cfg.pretrained_backbone)
        groups[0]["params"] += list(criterion.parameters())
        # fused: one kernel for all parameters and no per-parameter ``step.item()`` (517 host syncs per
        # step with the default implementation, all of the step's syncs but the grad-norm check)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.step = 0
        self.best = -1.0
        diag_cfg = DiagnosisConfig.from_train_config(cfg)
        if cfg.diag_memory_mb <= 0:
            diag_cfg = replace(diag_cfg, memory_mb=min(20000.0, 0.9 * device_memory_mb(self.device)))
        self.diagnoser = Diagnoser(diag_cfg)
        self.tb = None
        if load_from:
            self._load_weights(load_from, model, criterion)
        if resume:
            self._resume(resume)
        # Some parameters get no gradient in some steps (e.g. RLE flows on a frame without people).
        self.ddp = (DistributedDataParallel(self.step_module, device_ids=None if self.device.type == "cpu"
                                            else [self.device.index], find_unused_parameters=True)
                    if self.dist.world > 1 else self.step_module)
        synth = synth or SynthConfig(width=cfg.synth_width, height=cfg.synth_height,
                                     max_people=cfg.synth_max_people)
        source = build_source(cfg.data, "train", cfg.seed, synth)
        if source.layout != model_cfg.layout:
            raise PavenetError(f"--data {cfg.data} uses layout {source.layout!r} but the model has "
                               f"{model_cfg.layout!r}; add --set layout={source.layout}")
        aug = AugmentConfig(width=model_cfg.input_width, height=model_cfg.input_height)
        self.train_set = ClipDataset(source, cfg.seq_length, model_cfg.input_width, model_cfg.input_height,
                                     cfg.seed, aug)
        val_source = build_source(cfg.data, "val", 0, synth)
        self.val_set = ClipDataset(val_source, 1, model_cfg.input_width, model_cfg.input_height, 12345, None,
                                   size=cfg.val_clips)

    # -- checkpoints -------------------------------------------------------------------------

    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.step_module.model.state_dict(),
            "criterion": self.step_module.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": self.step, "base_lrs": self.base_lrs},
            "step": self.step, "epoch": self.step // self.cfg.iters_per_epoch, "best": self.best,
            "rng": rng, "model_config": self.model_cfg.to_dict(), "train_config": self.cfg.to_dict(),
            "layout": self.layout.to_json(),
        }

    def _load_weights(self, path, model, criterion) -> None:
        """Initialise from a checkpoint of the same architecture, or with ``init_partial`` from any
        checkpoint of the same layout (tensors whose name and shape match; e.g. a detection-stage
        model into a tracking model)."""
        state = load_checkpoint(path)
        if not self.cfg.init_partial:
            check_compatible(state, self.model_cfg, path)
            model.load_state_dict(state["model"])
            criterion.load_state_dict(state["criterion"])
            return
        stored = checkpoint_config(state, path)
        if stored.layout != self.model_cfg.layout:
            raise PavenetError(f"{path}: checkpoint is for keypoint layout {stored.layout!r}, "
                               f"not {self.model_cfg.layout!r}")
        counts = []
        for module, key in ((model, "model"), (criterion, "criterion")):
            own = module.state_dict()
            match = {k: v for k, v in state[key].items() if k in own and own[k].shape == v.shape}
            module.load_state_dict(match, strict=False)
            counts.append((len(match), len(own)))
        (m_in, m_all), (c_in, c_all) = counts
        tqdm.write(f"initialised {m_in}/{m_all} model and {c_in}/{c_all} criterion tensors from {path}; "
                   "the others start new")

    def _resume(self, path: str | Path) -> None:
        state = load_checkpoint(path)
        check_compatible(state, self.model_cfg, path)
        self.step_module.model.load_state_dict(state["model"])
        self.step_module.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.best = int(state["step"]), float(state.get("best", -1.0))
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def save(self, name: str) -> Path:
        path = self.work_dir / name
        if self.dist.main:
            save_checkpoint(path, self._state())
        return path

    def _save_epoch(self, epoch: int) -> None:
        """``epoch_N.pt``, keeping the newest ``keep_checkpoints`` of them."""
        self.save(f"epoch_{epoch}.pt")
        if self.dist.main:
            old = self.work_dir / f"epoch_{epoch - self.cfg.keep_checkpoints}.pt"
            if self.cfg.keep_checkpoints > 0 and old.exists():
                old.unlink()

    # -- logging -----------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        if not self.dist.main:
            return
        line = json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()})
        with open(self.work_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.tb is not None and record["mode"] in ("train", "val"):
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "iter"):
                    self.tb.add_scalar(f"{record['mode']}/{k}", v, self.step)

    def _diagnose(self, record: dict) -> None:
        """The troubleshooting table of docs/training-log.md, live: each symptom reported once (console + log line)."""
        for d in self.diagnoser.update(self.step, record):
            tqdm.write(("note" if d.expected else "warning") + ": " + d.message(), file=sys.stderr)
            self._log(d.record(record["epoch"], record["iter"]))

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PavenetError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
        self.tb = SummaryWriter(str(self.work_dir / "tensorboard"))

    def _seed_diagnoses(self) -> None:
        """On resume: diagnoses already in the log are not raised again."""
        path = self.work_dir / "log.jsonl"
        if not path.exists():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("mode") == "diagnosis":
                self.diagnoser.raised[r["rule"]] = r

    # -- the loop ----------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        micro_start = self.step * self.cfg.accumulate
        micro_end = self.cfg.total_steps * self.cfg.accumulate
        sampler = StepSampler(self.cfg.batch_size, micro_start, micro_end, self.dist.rank, self.dist.world)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler, collate_fn=collate,
                          num_workers=self.cfg.workers, persistent_workers=self.cfg.workers > 0,
                          pin_memory=self.device.type == "cuda",
                          prefetch_factor=4 if self.cfg.workers else None)

    def _set_lr(self) -> float:
        f = lr_factor(self.step, self.cfg)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
        return self.optimizer.param_groups[0]["lr"]

    def _forward(self, batch: dict) -> tuple[dict, dict]:
        images = batch["images"].to(self.device, non_blocking=True)
        targets = [t.to(self.device, non_blocking=True) for t in batch["targets"]]
        amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            return self.ddp(images, targets, batch["index"])

    def train(self, max_minutes: float = 0.0) -> dict:
        """Run to the configured number of steps (or until ``max_minutes`` have passed: then
        validate and save as at an epoch's end); returns the last validation metrics."""
        deadline = time.perf_counter() + 60 * max_minutes if max_minutes > 0 else float("inf")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main:
            (self.work_dir / "config.json").write_text(json.dumps(
                {"model": self.model_cfg.to_dict(), "train": self.cfg.to_dict()}, indent=2))
        cfg = self.cfg
        if self.dist.main:
            self._seed_diagnoses()
            if cfg.tensorboard:
                self._open_tensorboard()
        sums: dict[str, float] = defaultdict(float)
        diag_sums: dict[str, float] = defaultdict(float)
        count, bad, metrics = 0, 0, {}
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="it", disable=not self.progress,
                   dynamic_ncols=True)
        t_data = t_last = time.perf_counter()
        micro = 0
        for batch in self._loader():
            data_time = time.perf_counter() - t_data
            lr = self._set_lr()
            sync = (micro + 1) % cfg.accumulate == 0
            ctx = self.ddp.no_sync() if (not sync and self.dist.world > 1) else nullcontext()
            with ctx:
                losses, diag = self._forward(batch)
                (losses["loss"] / cfg.accumulate).backward()
            for k, v in losses.items():  # device tensors: read once per log interval, not per step
                sums[k] += v.detach()
            for k, v in diag.items():
                diag_sums[k] += v
            sums["data_time"] += data_time
            micro += 1
            if not sync:
                t_data = time.perf_counter()
                continue
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad > 0 else 1e12)
            # The one host sync of a step: a non-finite loss makes a non-finite gradient norm.
            grad_norm = float(norm)
            if not math.isfinite(grad_norm):
                bad += 1
                self.optimizer.zero_grad(set_to_none=True)
                tqdm.write(f"warning: non-finite loss or gradient at step {self.step + 1}; step skipped "
                           f"({bad}/{cfg.max_bad_steps})", file=sys.stderr)
                if bad > cfg.max_bad_steps:
                    raise PavenetError(f"loss was not finite for {bad} consecutive steps; stopped. The last good "
                                       f"checkpoint is {self.work_dir / 'last.pt'}")
                sums.clear()
                diag_sums.clear()
                count = 0
                t_data = t_last = time.perf_counter()
                continue
            bad = 0
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            count += 1
            sums["grad_norm"] += grad_norm
            bar.update(1)
            if self.step % cfg.log_interval == 0:
                now = time.perf_counter()
                record = self._train_record(sums, diag_sums, count, lr, (now - t_last) / count)
                self._log(record)
                if self.dist.main:
                    self._diagnose(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", kpt=f"{record['loss_kpt']:.3f}",
                                id_con=f"{record['trk_id_con']:.2f}", gnorm=f"{record['grad_norm']:.1f}")
                sums.clear()
                diag_sums.clear()
                count, t_last = 0, now
            if self.step % cfg.ckpt_interval == 0:
                self.save("last.pt")
            if self.step % cfg.iters_per_epoch == 0:
                metrics = self.validate()
                self.save("last.pt")
                self._save_epoch(self.step // cfg.iters_per_epoch)
            elif time.perf_counter() > deadline:
                tqdm.write(f"time limit of {max_minutes:g} min reached at step {self.step}")
                metrics = self.validate()
                self.save("last.pt")
                break
            t_data = time.perf_counter()
        bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.dist.world > 1:
            dist.barrier()
        return metrics

    def _train_record(self, sums: dict, diag_sums: dict, count: int, lr: float, secs: float) -> dict:
        epoch = (self.step - 1) // self.cfg.iters_per_epoch + 1
        it = (self.step - 1) % self.cfg.iters_per_epoch + 1
        micro = count * self.cfg.accumulate
        record = {"mode": "train", "epoch": epoch, "iter": it, "lr": lr}
        keys = sorted((k for k in sums if k not in ("grad_norm", "data_time", "loss")), key=log_key_order)
        record.update({k: float(sums[k]) / micro for k in keys})
        record.update(diagnostic_values(diag_sums))
        record["loss"] = float(sums["loss"]) / micro
        record["grad_norm"] = sums["grad_norm"] / count
        record["memory"] = round(peak_memory_mb(self.device))
        record["time"] = secs
        record["data_time"] = sums["data_time"] / micro
        return record

    def validate(self) -> dict:
        """Validate on the fixed set (rank 0), log a ``val`` line, keep ``best.pt`` (best F1 at OKS 0.5)."""
        metrics = {}
        if self.dist.main:
            model = self.step_module.model
            metrics = evaluate(model, self.val_set, self.step_module.criterion.sigmas, self.device,
                               self.cfg.batch_size)
            epoch = self.step // self.cfg.iters_per_epoch
            self._log({"mode": "val", "epoch": epoch, "iter": self.step, **metrics})
            m = metrics
            tqdm.write(f"val epoch {epoch}: mean OKS {m['mean_oks']:.3f}, recall@OKS0.5 {m['recall_oks50']:.3f}, "
                       f"precision@OKS0.5 {m['precision_oks50']:.3f}, best-query OKS {m['best_query_oks']:.3f}, "
                       f"best F1 {m['f1_best']:.3f} at score {m['thr_best']}")
            if m["f1_best"] > self.best:  # threshold-free enough: scores drift while a model trains
                self.best = m["f1_best"]
                self.save("best.pt")
        if self.dist.world > 1:
            dist.barrier()
        return metrics
