"""Training configuration (flat dataclass, saved in every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from pavenet.errors import PavenetError
from pavenet.model.config import override_fields


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        data: ``synthetic``, ``posetrack18:DIR``, ``posetrack21:DIR`` or ``coco:DIR``.
        epochs, iters_per_epoch: run length (an epoch of the endless synthetic stream is a fixed
            number of optimizer steps).
        batch_size: clips per step and process; accumulate: micro-batches per optimizer step.
        lr, weight_decay: AdamW; low_lr_factor: lr multiplier of the sampling offsets, and of the
            backbone when it starts from trained weights (``pretrained_backbone``, set automatically
            by ``--backbone-weights`` and ``--load-from``; a backbone trained from scratch needs full lr).
        schedule: ``cosine`` or ``step`` (x0.1 at each epoch of ``lr_drop``, comma-separated).
        warmup_iters: linear warm-up steps.
        schedule_minutes: the cosine also runs over this many minutes of this invocation (its
            progress is the larger of steps done and minutes used), so a time-boxed run
            (``--max-minutes``) ends at its lowest lr whatever the machine's speed. 0 = steps only.
        clip_grad: max gradient norm (0 disables); grad_norm is logged before clipping.
        seq_length: frames per training clip, processed in order; each frame gets the previous
            frame's track queries.
        grad_frames: the last this-many frames of a clip are trained; earlier frames run under
            ``torch.no_grad`` and keep no activations (flat memory over long clips).
        track_assignment: ``bonus`` (one Hungarian; a track query's cost for the person it followed
            is lowered by ``track_bonus``) or ``hard`` (TrackFormer/MOTR: a track query whose
            person is still there is assigned to it; Hungarian over the rest).
        track_keep_thr, track_max_lost: the runtime's rule, applied in training: a track whose
            query scores below ``track_keep_thr`` is lost (fed back with its last confident pose)
            and retired after ``track_max_lost`` such frames.
        track_drop, track_fp: training augmentation (TrackFormer): drop each track query with this
            probability per frame; with this probability per image add an unmatched detect query
            scoring >= 0.1 as a false-positive track query.
        track_birth_thr: a matched detect query becomes a track only when it scores at least this
            (the runtime's ``new_track_thr``); 0 hands every matched person over (TrackFormer).
        track_fuse_dist: each track is fed back with its pose fused with its detect row of the same
            person, as the runtime's tracker does (``TrackerThresholds.fuse_dist``, e.g. 0.2);
            0 feeds the track row's own pose (the models up to stage 6).
        track_reseat_dist: with ``track_fuse_dist``, a track whose detect row lies within this
            share of its pose's size goes on with that detect query's state, as the runtime does
            (``TrackerThresholds.reseat_dist``, e.g. 0.03); 0 = off (the models up to stage 7).
        ema_decay: keep an exponential moving average of the weights with this decay per optimizer
            step (e.g. 0.999; :mod:`training.loop.average`): validation, ``best.pt`` and the
            checkpoints' weights are the average's, the trained ones are kept for ``--resume``.
            0 = off.
        freeze_bn_stats: BatchNorm layers normalise with their running statistics during training
            and do not update them (their affine weights still train): for fine-tuning at a small
            batch (8 clips on a CPU) a model whose statistics came from larger batches. Validation
            and export use the running statistics either way.
        track_reset: probability that a clip forgets its tracks before its gradient window, so
            detect queries also learn on frames without track queries.
        track_feed: the pose a track query is fed with: ``refined`` (what the runtime feeds) or
            ``decoder`` (the last decoder layer's pose; the first shipped model).
        rle_reduction: ``person`` (RLE summed over a person's coordinates, averaged over people,
            as mmpose) or ``coordinate`` (averaged over coordinates; the first shipped model).
        enc_topk: each person's this-many cheapest encoder proposals are positives (one-to-many
            matching of the dense proposal stage, H-DETR); 1 = one-to-one Hungarian.
        dec_topk: hybrid layers (H-DETR): in every decoder layer but the last, each person also
            takes its next ``dec_topk - 1`` cheapest detect queries as positives (more pose
            targets for those layers); the last layer stays one-to-one, so the output has no
            duplicates to remove. 1 = one-to-one everywhere.
        loss_cls, loss_kpt, loss_oks: loss weights. ``loss_oks`` (1 - OKS of each matched pose,
            summed per person) applies to the proposals, every decoder layer and every refinement
            layer; unlike RLE's median-like pull it rewards committing to the likelier of two
            places a joint could be (left or right, facing or not) over a pose between them.
        cls_target: ``oks`` (varifocal loss towards each matched pose's OKS, so scores rank pose
            quality) or ``binary`` (PETR's focal loss towards 1 for every matched query).
        log_interval: steps per log line; ckpt_interval: steps between ``last.pt`` saves;
            keep_checkpoints: how many ``epoch_N.pt`` files to keep.
        val_clips: validation clips (synthetic val split / the dataset's val split).
        val_track_videos, val_track_frames: with ``val_track_videos`` > 0, every validation also
            runs the runtime's tracker (streaming step, track rules, the ``--load-from``
            checkpoint's tuned thresholds or the defaults) over this many whole val videos of
            this many frames (synthetic: the mixed suite's val split, as ``pavenet-eval --split
            val``; PoseTrack: its val folder), logs ``track_ap`` / ``track_mota`` / ``track_idf1``
            / ``track_switches`` / ``track_mean``, and ``best.pt`` is the best ``track_mean``
            (mean of AP, MOTA and IDF1) instead of the best per-frame F1. 0 = off.
        workers: data-loading processes per training process.
        seed: seeds model initialisation and the sample stream.
        amp: bfloat16 mixed precision on CUDA and on CPUs that compute bf16 natively (AVX512-BF16,
            AMX: ~1.3x faster steps); ignored on other CPUs.
        max_bad_steps: consecutive non-finite steps tolerated before stopping.
        init_partial: ``--load-from`` copies only the tensors whose name and shape match (start a
            tracking model from a detection-stage checkpoint); a checkpoint with a narrower light
            backbone is widened to this run's ``backbone_width`` first, with the same outputs.
        spread_offsets: at the start of a run (after ``--load-from``), move the sampling points of
            the pose decoder, refiner and track re-anchoring off their keypoints onto per-head rays
            of this radius (half-box units; 0 = leave them). Zero-initialised offsets at 0.1x lr
            stay on the keypoint, so those layers see only the features under their current pose.
        train_only: comma-separated name prefixes of the model parameters to train (e.g.
            ``refiner.fine.`` to fit a new stride-4 head on a trained model); the others stay fixed
            (BatchNorm statistics still update). Empty = train everything.
        fast_params, fast_lr_factor: comma-separated name prefixes of model parameters that train
            at ``lr x fast_lr_factor`` (e.g. ``backbone.stage3.2.,backbone.stage3.3.`` for blocks
            added by ``stride8_blocks`` to a trained model, which open too slowly at its lr).
        synth_width, synth_height, synth_max_people: synthetic frame size and crowd size.
        diag_*: thresholds of the live diagnosis (:class:`training.loop.diagnosis.DiagnosisConfig`);
            diag_memory_mb 0 = 20 GB or 90 % of the device, whichever is smaller.
        tensorboard: also write TensorBoard scalars to ``work_dir/tensorboard`` (needs ``tensorboard``).
    """

    data: str = "synthetic"
    epochs: int = 12
    iters_per_epoch: int = 500
    batch_size: int = 8
    accumulate: int = 1
    lr: float = 4e-4
    weight_decay: float = 1e-4
    low_lr_factor: float = 0.1
    pretrained_backbone: bool = False
    schedule: str = "cosine"
    lr_drop: str = "10"
    warmup_iters: int = 100
    schedule_minutes: float = 0.0
    clip_grad: float = 0.1
    ema_decay: float = 0.0
    freeze_bn_stats: bool = False
    seq_length: int = 5
    grad_frames: int = 3
    track_assignment: str = "bonus"
    track_bonus: float = -10.0
    track_keep_thr: float = 0.3
    track_max_lost: int = 15
    track_drop: float = 0.1
    track_fp: float = 0.1
    track_reset: float = 0.25
    track_birth_thr: float = 0.0
    track_fuse_dist: float = 0.0
    track_reseat_dist: float = 0.0
    track_feed: str = "refined"
    rle_reduction: str = "coordinate"
    enc_topk: int = 1
    dec_topk: int = 1
    loss_cls: float = 1.0
    loss_kpt: float = 1.0
    loss_oks: float = 0.0
    cls_target: str = "oks"
    log_interval: int = 10
    ckpt_interval: int = 200
    keep_checkpoints: int = 2
    val_clips: int = 48
    val_track_videos: int = 0
    val_track_frames: int = 100
    workers: int = 1
    seed: int = 0
    amp: bool = True
    max_bad_steps: int = 5
    init_partial: bool = False
    spread_offsets: float = 0.0
    train_only: str = ""
    fast_params: str = ""
    fast_lr_factor: float = 10.0
    synth_width: int = 320
    synth_height: int = 240
    synth_max_people: int = 10
    diag_after: int = 300
    diag_window: int = 100
    diag_id_con: float = 0.5
    diag_grad_norm: float = 200.0
    diag_memory_mb: float = 0.0
    diag_patience: int = 1000
    diag_min_delta: float = 0.05
    diag_l1_ratio: float = 3.0
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.fast_lr_factor <= 0:
            raise PavenetError("fast_lr_factor must be positive")
        if self.schedule_minutes < 0:
            raise PavenetError("schedule_minutes must be >= 0")
        if self.schedule not in ("cosine", "step"):
            raise PavenetError("schedule must be 'cosine' or 'step'")
        if min(self.epochs, self.iters_per_epoch, self.batch_size, self.accumulate, self.seq_length) < 1:
            raise PavenetError("epochs, iters_per_epoch, batch_size, accumulate and seq_length must be >= 1")
        if self.lr <= 0:
            raise PavenetError("lr must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise PavenetError("ema_decay must be 0 (off) or in (0, 1)")
        if self.track_assignment not in ("bonus", "hard"):
            raise PavenetError("track_assignment must be 'bonus' or 'hard'")
        if self.track_feed not in ("refined", "decoder"):
            raise PavenetError("track_feed must be 'refined' or 'decoder'")
        if self.rle_reduction not in ("person", "coordinate"):
            raise PavenetError("rle_reduction must be 'person' or 'coordinate'")
        if self.cls_target not in ("oks", "binary"):
            raise PavenetError("cls_target must be 'oks' or 'binary'")
        if self.enc_topk < 1 or self.dec_topk < 1:
            raise PavenetError("enc_topk and dec_topk must be >= 1")
        if not 1 <= self.grad_frames <= self.seq_length:
            raise PavenetError("grad_frames must be between 1 and seq_length")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.iters_per_epoch

    @property
    def drop_epochs(self) -> list[int]:
        return [int(e) for e in self.lr_drop.split(",") if e.strip()]

    def to_dict(self) -> dict:
        return asdict(self)

    def override(self, **changes) -> TrainConfig:
        """A copy with ``changes``; unknown keys and wrong types are errors."""
        return override_fields(self, changes, "training config")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}
