"""pavenet-train end to end on tiny configs (seconds, CPU)."""

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pavenet.errors import PavenetError
from pavenet.layouts import COCO17
from pavenet.model.pavenet import build_model
from pavenet.synth import SynthConfig
from tests.test_model import TINY
from training.config import TrainConfig
from training.data.dataset import ClipDataset, SyntheticSource, collate
from training.objective.criterion import SetCriterion
from training.objective.tracking import TrackBatch
from training.train_cli import main as train_main

TINY_SET = ["input_width=64", "input_height=64", "backbone_width=0.25", "d_model=32", "num_heads=2", "ffn_dim=64",
            "encoder_layers=1", "decoder_layers=3", "num_queries=8", "synth_width=96", "synth_height=72",
            "seq_length=3", "grad_frames=2",
            "synth_max_people=3", "warmup_iters=2", "val_clips=2", "log_interval=1", "ckpt_interval=3"]
# Every key of the user's example line (../shared/spec/training-log.md), in its order, with the
# refinement losses the spec adds for 2 refinement layers.
USER_KEYS = ["mode", "epoch", "iter", "lr", "enc_loss_cls", "enc_loss_kpt", "loss_cls", "loss_kpt", "d0.loss_cls",
             "d0.loss_kpt", "d1.loss_cls", "d1.loss_kpt", "d0.loss_kpt_refine", "d1.loss_kpt_refine", "trk_kpt_l1",
             "det_kpt_l1", "n_trk", "n_trk_pos", "n_det_pos", "trk_id_con", "loss", "grad_norm", "memory", "time"]


def _args(work: Path, *extra: str) -> list[str]:
    out = ["--work-dir", str(work), "--batch-size", "2", "--workers", "0", "--no-progress"]
    for s in TINY_SET:
        out += ["--set", s]
    return out + list(extra)


def _log(work: Path, mode: str = "train") -> list[dict]:
    lines = [json.loads(x) for x in (work / "log.jsonl").read_text().splitlines()]
    return [x for x in lines if x["mode"] == mode]


def test_tiny_model_overfits_one_clip():
    """The keypoint error of matched last-layer predictions falls by a large factor."""
    torch.manual_seed(0)
    synth = SynthConfig(width=96, height=72, min_people=2, max_people=2, noise=0, blur_prob=0)
    src = SyntheticSource(synth, "train", 0)
    data = ClipDataset(src, 1, 64, 64, 0, None)
    index = next(i for i in range(50) if len(data[i]["targets"][0]["track_ids"]) >= 2)
    batch = collate([data[index]])
    model = build_model(TINY)
    crit = SetCriterion(torch.tensor(COCO17.sigmas), TINY.decoder_layers)
    opt = torch.optim.AdamW([*model.parameters(), *crit.parameters()], lr=2e-3)
    tgt = batch["targets"][0]
    errors = []
    tracks = TrackBatch.empty(1, TINY.d_model, TINY.num_keypoints, "cpu")
    for _ in range(80):
        out = model(batch["images"][:, 0].float())
        enc_m, layer_m, _ = crit.match(out, tgt, tracks)
        losses, _ = crit(out, tgt, tracks, enc_m, layer_m)
        q, g = layer_m[-1][0]
        vis = tgt[0].visible[g]
        err = (out["keypoints"][-1][0, q] - tgt[0].keypoints[g]).abs()[vis].mean()
        errors.append(float(err.detach()))
        opt.zero_grad()
        SetCriterion.total(losses)["loss"].backward()
        opt.step()
    assert np.mean(errors[-5:]) < np.mean(errors[:5]) / 4, errors[::10]


def test_log_has_the_users_keys_and_checkpoints(tmp_path):
    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "4")) == 0
    train = _log(work)
    assert len(train) == 4
    assert list(train[-1]) == [*USER_KEYS, "data_time"], "the user's keys, in the user's order"
    assert all(np.isfinite(v) for v in train[-1].values() if isinstance(v, float))
    for line in train:
        assert line["n_trk_pos"] <= line["n_trk"]
    assert train[-1]["loss"] == pytest.approx(sum(v for k, v in train[-1].items() if "loss_" in k), abs=1e-4)
    val = _log(work, "val")
    assert len(val) == 1 and {"mean_oks", "recall_oks50", "best_query_oks", "f1_best", "thr_best"} <= set(val[0])
    for name in ("last.pt", "best.pt", "epoch_1.pt", "config.json"):
        assert (work / name).exists(), name
    state = torch.load(work / "last.pt", weights_only=True)
    assert state["model_config"]["d_model"] == 32 and json.loads(state["layout"])["name"] == "coco17"


def test_resume_continues_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_main(_args(full, "--epochs", "2", "--iters-per-epoch", "3")) == 0
    part.mkdir()
    shutil.copy(full / "epoch_1.pt", part / "epoch_1.pt")
    assert train_main(["--resume", str(part / "epoch_1.pt"), "--workers", "0", "--no-progress"]) == 0
    a, b = _log(full)[3:], _log(part)
    assert [x["iter"] for x in b] == [1, 2, 3] and [x["epoch"] for x in b] == [2, 2, 2]
    for x, y in zip(a, b):
        for key in ("loss", "loss_kpt", "enc_loss_cls", "grad_norm", "lr"):
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-5), key


def test_weight_average_is_what_checkpoints_hold_and_resume_restores(tmp_path):
    """ema_decay: the average moves by (1 - decay) towards the trained weights after each step;
    checkpoints hold it as ``model`` (what export and --load-from read) and the trained weights as
    ``train_model``; a resumed run continues both exactly."""
    from training.loop.average import WeightAverage

    model = build_model(TINY)
    avg = WeightAverage(model, 0.75)
    start = {k: v.clone() for k, v in avg.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update(model)
    for k, v in avg.model.state_dict().items():
        want = start[k] + 0.25 * (model.state_dict()[k] - start[k]) if v.is_floating_point() else model.state_dict()[k]
        assert torch.allclose(v, want, atol=1e-6), k
    assert not any(p.requires_grad for p in avg.model.parameters())

    full, part = tmp_path / "full", tmp_path / "part"
    ema = ("--set", "ema_decay=0.9")
    assert train_main(_args(full, "--epochs", "2", "--iters-per-epoch", "3", *ema)) == 0
    state = torch.load(full / "last.pt", weights_only=True)
    differ = [k for k, v in state["model"].items()
              if v.is_floating_point() and not torch.equal(v, state["train_model"][k])]
    assert len(differ) > len(state["model"]) // 2, "the average is not the trained weights"
    part.mkdir()
    shutil.copy(full / "epoch_1.pt", part / "epoch_1.pt")
    assert train_main(["--resume", str(part / "epoch_1.pt"), "--workers", "0", "--no-progress"]) == 0
    for x, y in zip(_log(full)[3:], _log(part)):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4, abs=1e-5)
    resumed = torch.load(part / "last.pt", weights_only=True)
    for key in ("model", "train_model"):
        for k, v in state[key].items():
            assert torch.allclose(v.float(), resumed[key][k].float(), atol=1e-5), (key, k)
    assert _log(full, "val")[-1]["mean_oks"] == pytest.approx(_log(part, "val")[-1]["mean_oks"], abs=1e-5)


def test_freeze_bn_stats_keeps_the_running_statistics(tmp_path):
    """freeze_bn_stats: BatchNorm's running statistics stay as loaded (here: as initialised, 0 and 1)
    while the run trains; without it they move."""
    def stats(work):
        state = torch.load(work / "last.pt", weights_only=True)["model"]
        return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}

    for freeze in (True, False):
        work = tmp_path / str(freeze)
        assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "2",
                                "--set", f"freeze_bn_stats={str(freeze).lower()}")) == 0
        s = stats(work)
        assert s, "the tiny model has BatchNorm layers"
        unchanged = all(torch.equal(v, torch.zeros_like(v) if k.endswith("mean") else torch.ones_like(v))
                        for k, v in s.items())
        assert unchanged == freeze, freeze


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    cases = [
        (["--set", "no_such_key=1"], "unknown config key(s): no_such_key"),
        (["--data", f"posetrack21:{tmp_path / 'missing'}"], "needs an existing dataset folder"),
        (["--data", "imagenet"], "unknown data source"),
    ]
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    cases.append((["--resume", str(corrupt)], "not a readable checkpoint"))
    other = tmp_path / "other.pt"
    torch.save({"hello": torch.zeros(1)}, other)
    cases.append((["--resume", str(other)], "not a PAVENet checkpoint"))
    for argv, message in cases:
        assert train_main(argv + ["--work-dir", str(tmp_path / "w"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], (argv, err)


def test_checkpoint_of_another_config_is_refused(tmp_path, capsys):
    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "1")) == 0
    capsys.readouterr()
    args = _args(tmp_path / "b", "--epochs", "1", "--iters-per-epoch", "1", "--set", "d_model=64",
                 "--load-from", str(work / "last.pt"))
    assert train_main(args) == 2
    assert "checkpoint of another model config: d_model=32 (wanted 64)" in capsys.readouterr().err
    # The number of detect queries and the input size change no tensor: the weights start such a run.
    args = _args(tmp_path / "c", "--epochs", "1", "--iters-per-epoch", "1", "--set", "num_queries=6",
                 "--set", "input_width=96", "--load-from", str(work / "last.pt"))
    assert train_main(args) == 0, capsys.readouterr().err


def test_non_finite_losses_are_skipped_then_stop(tmp_path, capsys, monkeypatch):
    from training.loop.sequence import TrainStep

    real = TrainStep.forward

    def poisoned(self, images, targets, seeds=None):
        losses, info = real(self, images, targets, seeds)
        losses["loss"] = losses["loss"] * float("nan")
        return losses, info

    monkeypatch.setattr(TrainStep, "forward", poisoned)
    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "8", "--set", "max_bad_steps=2")) == 2
    err = capsys.readouterr().err
    assert "step skipped (1/2)" in err and "loss was not finite for 3 consecutive steps" in err
    assert not (work / "last.pt").exists(), "nothing bad was saved"


def test_two_process_ddp_on_cpu(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    work = tmp_path / "ddp"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "training.train_cli",
           *_args(work, "--epochs", "1", "--iters-per-epoch", "3", "--device", "cpu")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(_log(work)) == 3 and (work / "last.pt").exists()
    assert result.stdout.count("trained ") == 1, "only rank 0 reports"


@pytest.mark.parametrize("fine_grid,side_heads,fuse,blocks8", [(0, False, False, 1), (3, False, False, 1),
                                                               (0, True, False, 1), (0, False, True, 2)])
def test_one_step_gives_every_parameter_a_gradient(fine_grid, side_heads, fuse, blocks8):
    """No dead heads: one training step on clips with people reaches every trainable parameter of
    the model and of the criterion's flows (with and without the stride-4 head and side heads, with
    the runtime's fusion and re-seat in the hand-over, and with an identity-initialised stride-8
    block)."""
    from training.config import TrainConfig
    from training.loop.sequence import TrainStep
    from training.loop.trainer import build_criterion

    torch.manual_seed(0)
    cfg = TINY.override(num_queries=8, fine_grid=fine_grid, side_heads=side_heads, stride8_blocks=blocks8)
    handover = {"track_fuse_dist": 0.5, "track_reseat_dist": 0.5} if fuse else {}
    train = TrainConfig(seq_length=3, grad_frames=2, track_drop=0.0, track_reset=0.0, **handover)
    step = TrainStep(build_model(cfg), build_criterion(cfg, train), train.grad_frames).train()
    src = SyntheticSource(SynthConfig(width=96, height=72, min_people=2, max_people=3, exit_rate=0.0,
                                      min_labelled_height=0.0), "train", 0)
    data = ClipDataset(src, 3, 64, 64, 0, None)
    batch = collate([data[i] for i in range(4)])
    opt = torch.optim.SGD(step.parameters(), lr=1e-3)
    for _ in range(2):  # zero-initialised last layers pass gradient to the layers before them from step 2 on
        opt.zero_grad()
        losses, _ = step(batch["images"], batch["targets"], batch["index"])
        losses["loss"].backward()
        opt.step()
    dead = [n for n, p in step.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not dead, f"parameters without gradient: {dead}"


def test_settings_from_a_config_file_count_as_explicit(tmp_path):
    """pretrained_backbone from a config file is the user's choice: --load-from must not flip it."""
    from training.train_cli import build_parser, resolve_configs

    cfg = tmp_path / "run.toml"
    cfg.write_text("[train]\npretrained_backbone = false\n")
    args = build_parser().parse_args(["--config", str(cfg), "--set", "enc_topk=4"])
    _, train_cfg, explicit = resolve_configs(args)
    assert {"pretrained_backbone", "enc_topk"} <= explicit
    assert train_cfg.pretrained_backbone is False and train_cfg.enc_topk == 4


def test_sigterm_stops_after_the_step_with_a_resumable_checkpoint(tmp_path, capsys, monkeypatch):
    """A signal only asks the loop to stop: the step in flight completes, last.pt holds it, the
    command exits 130 and says how to continue; --resume then runs on from that step."""
    import os
    import signal

    from training.loop.trainer import Trainer

    real = Trainer._micro_step

    def signalled(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "_micro_step", signalled)
    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "6")) == 130
    out = capsys.readouterr().out
    assert "stopped pavenet-t by SIGTERM at step 2" in out and f"--resume {work / 'last.pt'}" in out
    assert torch.load(work / "last.pt", weights_only=True)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handler is removed after the run"
    monkeypatch.setattr(Trainer, "_micro_step", real)
    assert train_main(["--resume", str(work / "last.pt"), "--no-progress"]) == 0
    assert torch.load(work / "last.pt", weights_only=True)["step"] == 6


def test_hybrid_layer_matching_trains(tmp_path, monkeypatch):
    """dec_topk > 1: intermediate decoder layers get more positives than the one-to-one last layer."""
    from training.objective.criterion import SetCriterion

    counts = []
    real = SetCriterion.match

    def spy(self, *args, **kwargs):
        enc, layers, probs = real(self, *args, **kwargs)
        if len(layers) > 1:
            counts.append((sum(len(r) for r, _ in layers[0]), sum(len(r) for r, _ in layers[-1])))
        return enc, layers, probs

    monkeypatch.setattr(SetCriterion, "match", spy)
    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "2", "--set", "dec_topk=3")) == 0
    assert all(first >= last for first, last in counts) and any(first > last for first, last in counts)
    assert all(math.isfinite(x["d0.loss_kpt"]) for x in _log(work) if x.get("mode") == "train")


def test_a_signal_to_the_whole_process_group_stops_cleanly(tmp_path):
    """Ctrl-C in a terminal or a scheduler's kill reaches the data workers too: they ignore it, and
    the run (with a worker process) stops after its step with last.pt saved, exit status 130."""
    import os
    import signal
    import subprocess
    import time

    work = tmp_path / "run"
    args = _args(work, "--epochs", "1", "--iters-per-epoch", "500")
    args[args.index("--workers") + 1] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "training.train_cli", *args], cwd=Path(__file__).parents[1],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = work / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (log.exists() and '"train"' in log.read_text()):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped pavenet-t by SIGTERM" in out and "Traceback" not in err
    assert torch.load(work / "last.pt", weights_only=True)["step"] >= 1


def test_train_only_keeps_every_other_parameter_fixed():
    """``train_only`` (fit a new head on a trained model): only the named parameters train."""
    from training.loop.trainer import freeze_except

    model = build_model(TINY.override(fine_grid=3))
    freeze_except(model, "refiner.fine., enc_head.")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("refiner.fine.", "enc_head.")) for n in trained)
    assert any(n.startswith("refiner.fine.") for n in trained) and any(n.startswith("enc_head.") for n in trained)
    with pytest.raises(PavenetError, match="matches no model parameter"):
        freeze_except(build_model(TINY), "no_such_module.")


def test_reusing_value_projections_keeps_losses_and_gradients():
    """A frame's projected tokens are reused while it stays in a window (training speed): the
    losses and every gradient equal projecting them in every window (to 1e-5)."""
    from training.config import TrainConfig
    from training.loop.sequence import TrainStep
    from training.loop.trainer import build_criterion

    torch.manual_seed(0)
    cfg = TINY.override(num_queries=8)
    train = TrainConfig(seq_length=4, grad_frames=2, track_drop=0.0, track_reset=0.0)
    step = TrainStep(build_model(cfg), build_criterion(cfg, train), train.grad_frames).train()
    with torch.no_grad():  # the zero-initialised heads would hide differences in the paths before them
        for p in step.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    src = SyntheticSource(SynthConfig(width=96, height=72, min_people=2, max_people=3, exit_rate=0.0,
                                      min_labelled_height=0.0), "train", 0)
    batch = collate([ClipDataset(src, 4, 64, 64, 0, None)[i] for i in range(3)])
    calls = []
    for m in step.modules():
        if hasattr(m, "value_cache"):
            m.value_proj.register_forward_hook(lambda *_: calls.append(1))
    results, projections = [], []
    for reuse in (False, True):
        step.reuse_values = reuse
        step.zero_grad()
        calls.clear()
        losses, _ = step(batch["images"], batch["targets"], batch["index"])
        projections.append(len(calls))
        losses["loss"].backward()
        results.append(({k: float(v.detach()) for k, v in losses.items()},
                        {n: p.grad.clone() for n, p in step.named_parameters() if p.grad is not None}))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert projections[1] < projections[0], projections
    assert loss_a.keys() == loss_b.keys() and grad_a.keys() == grad_b.keys()
    for k in loss_a:
        assert loss_b[k] == pytest.approx(loss_a[k], abs=1e-5, rel=1e-5), k
    for n in grad_a:
        torch.testing.assert_close(grad_b[n], grad_a[n], atol=1e-5, rtol=1e-4, msg=n)
    assert all(m.value_cache is None for m in step.modules() if hasattr(m, "value_cache")), "caches dropped"


TRACK_KEYS = {"track_ap", "track_mota", "track_idf1", "track_switches", "track_mean"}


def test_tracker_validation_logs_tracking_and_keeps_the_best_and_the_thresholds(tmp_path):
    from export.onnx_export import set_thresholds
    from pavenet.contract import TrackerThresholds

    first = tmp_path / "first"
    assert train_main(_args(first, "--epochs", "1", "--iters-per-epoch", "1")) == 0
    tuned = TrackerThresholds().override(new_track_thr=0.05, keep_thr=0.05, keypoint_thr=0.1)
    set_thresholds(first / "last.pt", tuned)  # as pavenet-eval --tune stores them
    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "2", "--iters-per-epoch", "2", "--load-from", str(first / "last.pt"),
                            "--set", "val_track_videos=1", "--set", "val_track_frames=6")) == 0
    val = _log(work, "val")
    assert len(val) == 2 and all(TRACK_KEYS <= set(v) for v in val)
    for v in val:
        assert v["track_mean"] == pytest.approx((v["track_ap"] + v["track_mota"] + v["track_idf1"]) / 3)
    best = torch.load(work / "best.pt", weights_only=True)
    assert best["best"] == pytest.approx(max(v["track_mean"] for v in val)), "best.pt is the best tracker"
    assert TrackerThresholds().override(**best["tracker_thresholds"]) == tuned, "thresholds travel on"


def test_tracker_validation_scores_what_pavenet_eval_scores(tmp_path):
    """The validator around the in-memory model = the runtime's tracker on the saved checkpoint."""
    from pavenet.contract import TrackerThresholds
    from pavenet.model.checkpoint import load_checkpoint
    from pavenet.tracker import Tracker
    from training.evaluation.track_eval import run_tracker, score
    from training.loop.validation import TrackValidator

    work = tmp_path / "run"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "2")) == 0
    thr = TrackerThresholds().override(new_track_thr=0.02, keep_thr=0.02, keypoint_thr=0.05)
    validator = TrackValidator("synthetic", 1, 8, thr)
    model = build_model(_checkpoint_config(work / "last.pt"))
    model.load_state_dict(load_checkpoint(work / "last.pt")["model"])
    model.train()
    got = validator(model)
    assert model.training, "the model goes back to training mode"
    results, _ = run_tracker(Tracker.from_checkpoint(work / "last.pt", "cpu", **vars(thr)), iter(validator.videos),
                             progress=False)
    want = score(results, thr.keypoint_thr)
    assert sum(len(p.track_ids) for _, preds in results for p in preds) > 0, "the check sees poses"
    assert got["track_ap"] == pytest.approx(want["ap"]) and got["track_mota"] == pytest.approx(want["mota"])
    assert got["track_idf1"] == pytest.approx(want["idf1"]) and got["track_switches"] == want["id_switches"]


def _checkpoint_config(path):
    from pavenet.model.checkpoint import checkpoint_config, load_checkpoint

    return checkpoint_config(load_checkpoint(path), path)


def test_schedule_minutes_ends_the_cosine_at_the_time_budget():
    from training.loop.trainer import lr_factor

    steps = TrainConfig(epochs=10, iters_per_epoch=100, warmup_iters=10)
    timed = replace(steps, schedule_minutes=8.0)
    # Step-based progress alone: half-way through the steps is half the lr (plus the floor).
    assert lr_factor(505, steps, minutes=7.9) == pytest.approx(0.505, abs=1e-3)
    # With the time budget: the larger progress wins, so lr is near its floor at 7.9 of 8 minutes ...
    assert lr_factor(505, timed, minutes=7.9) < 0.02
    assert lr_factor(505, timed, minutes=8.5) == pytest.approx(0.01)
    # ... and a fast machine still follows its steps.
    assert lr_factor(1000, timed, minutes=1.0) == pytest.approx(0.01)
    assert lr_factor(5, timed, minutes=7.9) == lr_factor(5, steps)  # warm-up is by steps
    with pytest.raises(PavenetError):
        replace(steps, schedule_minutes=-1.0)


def test_fast_params_train_at_their_own_lr(tmp_path):
    """``fast_params`` puts the named parameters (here a grown stride-8 block) in their own AdamW
    group at lr x fast_lr_factor; the rest keep theirs; a prefix that names nothing is refused."""
    from training.loop.trainer import Trainer

    cfg = TrainConfig(epochs=1, iters_per_epoch=1, batch_size=1, seq_length=2, grad_frames=1, workers=0,
                      val_clips=1, lr=1e-4, fast_params="backbone.stage3.2.", fast_lr_factor=10.0)
    trainer = Trainer(TINY.override(stride8_blocks=2), cfg, tmp_path / "run", device="cpu", progress=False)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["fast"]["lr"] == pytest.approx(1e-3) and groups["main"]["lr"] == pytest.approx(1e-4)
    block = {id(p) for p in trainer.step_module.model.backbone.stage3[2].parameters()}
    assert {id(p) for p in groups["fast"]["params"]} == block
    assert not block & {id(p) for g in trainer.optimizer.param_groups if g["name"] != "fast" for p in g["params"]}
    with pytest.raises(PavenetError, match="fast_params"):
        Trainer(TINY, replace(cfg, fast_params="nothing."), tmp_path / "run2", device="cpu", progress=False)


def test_a_wider_backbone_starts_from_a_narrower_checkpoint_with_the_same_outputs(tmp_path, capsys):
    """Net2Wider: a light backbone widened from a checkpoint computes what the checkpoint did
    (eval and train mode), copied channels learn apart, and ``--load-from`` with ``init_partial``
    widens a narrower checkpoint by itself; narrowing is refused."""
    from training.loop.widen import light_channels, widen_light_backbone

    torch.manual_seed(0)
    narrow_cfg = TINY.override(backbone_width=0.5, stride8_blocks=2)
    wide_cfg = narrow_cfg.override(backbone_width=1.0)
    narrow = build_model(narrow_cfg)
    for m in narrow.modules():  # trained-looking BatchNorm statistics and scales
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    wide = build_model(wide_cfg)
    wide.load_state_dict(widen_light_backbone(narrow.state_dict(), narrow_cfg, wide_cfg, noise=0.1))
    assert light_channels(1.0)[2] > light_channels(0.5)[2]
    images = torch.randint(0, 256, (2, 3, TINY.input_height, TINY.input_width)).float()
    for train in (False, True):
        narrow.train(train), wide.train(train)
        with torch.no_grad():
            a, b = narrow(images), wide(images)
        for key in ("scores", "keypoints", "tokens"):
            torch.testing.assert_close(b[key], a[key], atol=1e-4, rtol=1e-4)
    wide.train()
    wide(images)["tokens"].square().mean().backward()
    grad = wide.backbone.stem[0][0].weight.grad  # [C', 3, 3, 3]: a copied channel and its original differ
    c_old = light_channels(0.5)[0]
    first = wide.backbone.stem[0][0].weight[c_old:]
    orig = [int(torch.nonzero((wide.backbone.stem[0][0].weight[:c_old] == w).all(-1).all(-1).all(-1))[0])
            for w in first]
    assert not torch.allclose(grad[c_old:], grad[orig])
    with pytest.raises(PavenetError, match="narrower"):
        widen_light_backbone(wide.state_dict(), wide_cfg, narrow_cfg)

    run = tmp_path / "narrow"
    assert train_main(_args(run, "--epochs", "1", "--iters-per-epoch", "1", "--set", "backbone_width=0.25")) == 0
    out = tmp_path / "wide"
    assert train_main(_args(out, "--epochs", "1", "--iters-per-epoch", "1", "--load-from", str(run / "last.pt"),
                            "--set", "backbone_width=0.5", "--set", "init_partial=true")) == 0
    assert "widened the light backbone from width 0.25 to 0.5" in capsys.readouterr().out
