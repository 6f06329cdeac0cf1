"""The training loop: AdamW, warm-up + cosine/step schedule, clipping, accumulation, AMP, DDP and
NaN protection. Its pieces live beside it: checkpoints (``checkpoints.py``), the log and live
diagnosis (``logbook.py``), validation (``validation.py``), devices (``devices.py``) and the
step over a clip (``sequence.py``)."""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pavenet.contract import TrackerThresholds
from pavenet.errors import PavenetError
from pavenet.layouts import get_layout
from pavenet.model.attention import WindowDeformableAttention, spread_offsets
from pavenet.model.checkpoint import load_checkpoint
from pavenet.model.config import ModelConfig
from pavenet.model.pavenet import build_model, param_groups
from pavenet.synth import SynthConfig
from training.config import TrainConfig
from training.data.augment import AugmentConfig
from training.data.dataset import ClipDataset, StepSampler, build_source, collate
from training.loop.average import WeightAverage
from training.loop.checkpoints import RunCheckpoints, load_resume_state, load_weights
from training.loop.devices import autocast, device_memory_mb, peak_memory_mb, setup_distributed
from training.loop.diagnosis import Diagnoser, DiagnosisConfig
from training.loop.logbook import IntervalMeter, RunLog
from training.loop.sequence import TrainStep
from training.loop.stop import StopRequest, ignore_stop_signals
from training.loop.validation import TrackValidator, Validator
from training.objective.criterion import LossConfig, SetCriterion
from training.objective.tracking import TrackRules


def build_criterion(model_cfg: ModelConfig, cfg: TrainConfig) -> SetCriterion:
    """The criterion and track rules a training config describes."""
    loss_cfg = LossConfig(loss_cls=cfg.loss_cls, loss_kpt=cfg.loss_kpt, loss_oks=cfg.loss_oks,
                          cls_target=cfg.cls_target, rle_reduction=cfg.rle_reduction,
                          sigma_relative=model_cfg.sigma_relative, enc_topk=cfg.enc_topk,
                          dec_topk=cfg.dec_topk)
    rules = TrackRules(assignment=cfg.track_assignment, bonus=cfg.track_bonus, keep_thr=cfg.track_keep_thr,
                       max_lost=cfg.track_max_lost, drop=cfg.track_drop, fp=cfg.track_fp, reset=cfg.track_reset,
                       birth_thr=cfg.track_birth_thr, fuse_dist=cfg.track_fuse_dist,
                       reseat_dist=cfg.track_reseat_dist)
    return SetCriterion(torch.tensor(get_layout(model_cfg.layout).sigmas), model_cfg.decoder_layers, loss_cfg, rules,
                        model_cfg.side_pairs)


def lr_factor(step: int, cfg: TrainConfig, minutes: float = 0.0) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (warm-up, then cosine or steps);
    ``minutes`` used so far count towards the cosine when ``cfg.schedule_minutes`` is set."""
    if step < cfg.warmup_iters:
        return 0.001 + 0.999 * step / cfg.warmup_iters
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_iters) / max(cfg.total_steps - cfg.warmup_iters, 1)
        if cfg.schedule_minutes > 0:
            progress = max(progress, minutes / cfg.schedule_minutes)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    epoch = step // cfg.iters_per_epoch
    return 0.1 ** sum(epoch >= e for e in cfg.drop_epochs)


def params_named(model: torch.nn.Module, prefixes: str, option: str) -> set[int]:
    """ids of the model parameters whose name starts with one of the comma-separated
    ``prefixes``; a one-line error naming ``option`` when there are none."""
    names = tuple(p.strip() for p in prefixes.split(",") if p.strip())
    found = {id(p) for n, p in model.named_parameters() if names and n.startswith(names)}
    if not found:
        raise PavenetError(f"{option}={prefixes!r} matches no model parameter (names look like "
                           f"{', '.join(n for n, _ in list(model.named_parameters())[:3])}, ...)")
    return found


def split_fast_group(model: torch.nn.Module, groups: list[dict], prefixes: str, lr: float) -> dict:
    """Move the parameters named by ``prefixes`` (``fast_params``) out of ``groups`` into a new
    AdamW group at ``lr``, which it returns."""
    fast = params_named(model, prefixes, "fast_params")
    moved = []
    for g in groups:
        moved += [p for p in g["params"] if id(p) in fast]
        g["params"] = [p for p in g["params"] if id(p) not in fast]
    return {"params": moved, "lr": lr, "weight_decay": groups[0]["weight_decay"], "name": "fast"}


def freeze_except(model: torch.nn.Module, prefixes: str) -> None:
    """Keep every model parameter fixed but those named by ``prefixes`` (``train_only``)."""
    trained = params_named(model, prefixes, "train_only")
    for param in model.parameters():
        param.requires_grad_(id(param) in trained)


class Trainer:
    """Trains one run into ``work_dir`` (``log.jsonl``, ``config.json``, ``last.pt``, ``best.pt``)."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, work_dir: str | Path, device: str = "auto",
                 resume: str | Path | None = None, load_from: str | Path | None = None,
                 backbone_weights: str | None = None,
                 synth: SynthConfig | None = None, progress: bool = True, mark_pretrained: bool = True):
        self.dist, self.device = setup_distributed(device)
        self.stopped_by: str | None = None  # the signal that ended train() early, if one did
        if (backbone_weights or load_from) and not resume and mark_pretrained:
            cfg = cfg.override(pretrained_backbone=True)  # saved with the run, so a resume groups alike
        self.model_cfg, self.cfg, self.work_dir = model_cfg, cfg, Path(work_dir)
        self.progress = progress and self.dist.main
        torch.manual_seed(cfg.seed)
        self.layout = get_layout(model_cfg.layout)
        model = build_model(model_cfg)
        if backbone_weights:
            model.backbone.load_pretrained(backbone_weights)
        if cfg.train_only:
            freeze_except(model, cfg.train_only)
        criterion = build_criterion(model_cfg, cfg)
        self.step_module = TrainStep(model, criterion, cfg.grad_frames, cfg.track_feed).to(self.device)
        groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.low_lr_factor,
                              pretrained_backbone=cfg.pretrained_backbone)
        groups[0]["params"] += list(criterion.parameters())
        if cfg.fast_params:
            groups.append(split_fast_group(model, groups, cfg.fast_params, cfg.lr * cfg.fast_lr_factor))
        groups = [g for g in groups if g["params"]]
        # fused: one kernel for all parameters and no per-parameter ``step.item()`` (517 host syncs per
        # step with the default implementation, all of the step's syncs but the grad-norm check)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self._t_start = time.perf_counter()  # reset when training starts; schedule_minutes counts from it
        self.step, best = 0, -1.0
        if load_from:
            message = load_weights(load_from, model, criterion, model_cfg, cfg.init_partial)
            if message:
                tqdm.write(message)
        if cfg.spread_offsets and not resume:
            for module in model.modules():
                if isinstance(module, WindowDeformableAttention):
                    spread_offsets(module, cfg.spread_offsets)
        self._frozen_norms = ([m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
                              if cfg.freeze_bn_stats else [])
        # created after --load-from, so the average starts at the loaded weights
        self.average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        if resume:
            self.step, best = load_resume_state(resume, model, criterion, self.optimizer, model_cfg, self.device,
                                                self.average.model if self.average else None)
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
        val_set = ClipDataset(build_source(cfg.data, "val", 0, synth), 1, model_cfg.input_width,
                              model_cfg.input_height, 12345, None, size=cfg.val_clips)
        # tuned tracker thresholds travel with the weights: kept from --load-from / --resume
        stored = load_checkpoint(resume or load_from).get("tracker_thresholds") if (resume or load_from) else None
        self.thresholds = TrackerThresholds().override(**stored) if stored else None
        tracks = None
        if cfg.val_track_videos > 0 and self.dist.main:
            if model_cfg.window == "centred":
                raise PavenetError("val_track_videos runs the streaming tracker: it needs window=causal or current")
            tracks = TrackValidator(cfg.data, cfg.val_track_videos, cfg.val_track_frames,
                                    self.thresholds or TrackerThresholds())
        self.validator = Validator(val_set, criterion.sigmas, self.device, cfg.batch_size, best, tracks)
        self.checkpoints = RunCheckpoints(self.work_dir, self.dist.main, cfg.keep_checkpoints)
        self.log: RunLog | None = None  # opened by train()
        self._bad_steps = 0

    @property
    def best(self) -> float:
        return self.validator.best

    def state(self) -> dict:
        """Everything a resume needs (weights, optimizer, schedule position, random state, configs)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        trained = self.step_module.model.state_dict()
        extra = {"train_model": trained} if self.average else {}
        return {
            "model": self.average.model.state_dict() if self.average else trained, **extra,
            "criterion": self.step_module.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": self.step, "base_lrs": self.base_lrs},
            "step": self.step, "epoch": self.step // self.cfg.iters_per_epoch, "best": self.best,
            "rng": rng, "model_config": self.model_cfg.to_dict(), "train_config": self.cfg.to_dict(),
            "layout": self.layout.to_json(),
            **({"tracker_thresholds": asdict(self.thresholds)} if self.thresholds else {}),
        }

    def save(self, name: str) -> Path:
        return self.checkpoints.save(name, self.state())

    # -- the loop ----------------------------------------------------------------------------

    def train(self, max_minutes: float = 0.0) -> dict:
        """Run to the configured number of steps (or until ``max_minutes`` have passed: then
        validate and save as at an epoch's end); returns the last validation metrics. SIGINT or
        SIGTERM ends the run after the current step with ``last.pt`` saved (:attr:`stopped_by`
        names the signal)."""
        with StopRequest() as stop:
            metrics = self._loop(max_minutes, stop)
        self.stopped_by = stop.signal_name
        return metrics

    def _loop(self, max_minutes: float, stop: StopRequest) -> dict:
        self._t_start = time.perf_counter()
        deadline = self._t_start + 60 * max_minutes if max_minutes > 0 else float("inf")
        self._open_run()
        cfg, metrics = self.cfg, {}
        meter, t_last = IntervalMeter(), time.perf_counter()
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="it", disable=not self.progress,
                   dynamic_ncols=True)
        t_data = time.perf_counter()
        for micro, batch in enumerate(self._loader()):
            stepped = self._micro_step(batch, meter, time.perf_counter() - t_data,
                                       sync=(micro + 1) % cfg.accumulate == 0)
            if stepped:
                bar.update(1)
                if self.step % cfg.log_interval == 0:
                    now = time.perf_counter()
                    self._log_interval(meter, bar, (now - t_last) / meter.steps)
                    meter, t_last = IntervalMeter(), now
                if self.step % cfg.ckpt_interval == 0 or stop.signal_name:
                    self.save("last.pt")
                if stop.signal_name:
                    tqdm.write(f"{stop.signal_name} received: stopped at step {self.step} with last.pt saved")
                    break
                if self.step % cfg.iters_per_epoch == 0:
                    metrics = self._end_epoch()
                elif time.perf_counter() > deadline:
                    tqdm.write(f"time limit of {max_minutes:g} min reached at step {self.step}")
                    metrics = self._end_epoch(epoch_file=False)
                    break
            elif stepped is None:  # a skipped non-finite step: the interval starts over
                meter, t_last = IntervalMeter(), time.perf_counter()
            t_data = time.perf_counter()
        bar.close()
        self.log.close()
        if self.dist.world > 1:
            dist.barrier()
        return metrics

    def _micro_step(self, batch: dict, meter: IntervalMeter, data_time: float, sync: bool) -> bool | None:
        """Forward and backward of one micro-batch; with ``sync`` also clip and step the optimizer.
        Returns True after an optimizer step, False while accumulating, None for a skipped
        (non-finite) step."""
        ctx = self.ddp.no_sync() if (not sync and self.dist.world > 1) else nullcontext()
        with ctx:
            losses, diag = self._forward(batch)
            (losses["loss"] / self.cfg.accumulate).backward()
        meter.add_micro(losses, diag, data_time)
        if not sync:
            return False
        minutes = (time.perf_counter() - self._t_start) / 60
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * lr_factor(self.step, self.cfg, minutes)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = self.cfg.clip_grad if self.cfg.clip_grad > 0 else 1e12
        # The one host sync of a step: a non-finite loss makes a non-finite gradient norm.
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if not math.isfinite(grad_norm):
            self._skip_bad_step()
            return None
        self._bad_steps = 0
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.average:
            self.average.update(self.step_module.model)
        self.step += 1
        meter.add_step(grad_norm)
        return True

    def _skip_bad_step(self) -> None:
        self._bad_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        tqdm.write(f"warning: non-finite loss or gradient at step {self.step + 1}; step skipped "
                   f"({self._bad_steps}/{self.cfg.max_bad_steps})", file=sys.stderr)
        if self._bad_steps > self.cfg.max_bad_steps:
            raise PavenetError(f"loss was not finite for {self._bad_steps} consecutive steps; stopped. The last "
                               f"good checkpoint is {self.work_dir / 'last.pt'}")

    def _forward(self, batch: dict) -> tuple[dict, dict]:
        for norm in self._frozen_norms:  # again each step: validation puts the model back in train mode
            norm.eval()
        images = batch["images"].to(self.device, non_blocking=True)
        targets = [t.to(self.device, non_blocking=True) for t in batch["targets"]]
        with autocast(self.device, self.cfg.amp):
            return self.ddp(images, targets, batch["index"])

    def _log_interval(self, meter: IntervalMeter, bar: tqdm, secs_per_step: float) -> None:
        epoch = (self.step - 1) // self.cfg.iters_per_epoch + 1
        it = (self.step - 1) % self.cfg.iters_per_epoch + 1
        record = meter.record(epoch, it, self.optimizer.param_groups[0]["lr"], secs_per_step,
                              peak_memory_mb(self.device))
        self.log.write(record, self.step)
        self.log.diagnose(record, self.step)
        bar.set_postfix(loss=f"{record['loss']:.3f}", kpt=f"{record['loss_kpt']:.3f}",
                        id_con=f"{record['trk_id_con']:.2f}", gnorm=f"{record['grad_norm']:.1f}")

    def _end_epoch(self, epoch_file: bool = True) -> dict:
        """Validate, keep ``best.pt``, save ``last.pt`` (and ``epoch_N.pt`` at a real epoch end)."""
        metrics = self.validate()
        self.save("last.pt")
        if epoch_file:
            self.checkpoints.save_epoch(self.step // self.cfg.iters_per_epoch, self.state())
        return metrics

    def validate(self) -> dict:
        """Validate on the fixed set (rank 0), log a ``val`` line, keep ``best.pt`` (best F1 at OKS 0.5)."""
        if not self.dist.main:
            return {}
        epoch = self.step // self.cfg.iters_per_epoch
        metrics = self.validator(self.average.model if self.average else self.step_module.model, epoch)
        if self.log is not None:
            self.log.write({"mode": "val", "epoch": epoch, "iter": self.step, **metrics}, self.step)
        if self.validator.is_best(metrics):
            self.save("best.pt")
        return metrics

    def _open_run(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main:
            (self.work_dir / "config.json").write_text(json.dumps(
                {"model": self.model_cfg.to_dict(), "train": self.cfg.to_dict()}, indent=2))
        diag_cfg = DiagnosisConfig.from_train_config(self.cfg)
        if self.cfg.diag_memory_mb <= 0:
            diag_cfg = replace(diag_cfg, memory_mb=min(20000.0, 0.9 * device_memory_mb(self.device)))
        self.log = RunLog(self.work_dir, self.dist.main, Diagnoser(diag_cfg), self.cfg.tensorboard)

    def _loader(self) -> DataLoader:
        micro_start = self.step * self.cfg.accumulate
        micro_end = self.cfg.total_steps * self.cfg.accumulate
        sampler = StepSampler(self.cfg.batch_size, micro_start, micro_end, self.dist.rank, self.dist.world)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler, collate_fn=collate,
                          num_workers=self.cfg.workers, persistent_workers=self.cfg.workers > 0,
                          pin_memory=self.device.type == "cuda", worker_init_fn=ignore_stop_signals,
                          prefetch_factor=4 if self.cfg.workers else None)
