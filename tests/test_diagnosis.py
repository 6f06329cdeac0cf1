"""The troubleshooting table as live rules, and pavenet-report on a real log."""

import json
from dataclasses import replace

import pytest

from tests.test_train import _args
from training.loop.diagnosis import RULES, Diagnoser, DiagnosisConfig, diagnose_log
from training.report_cli import main as report_main
from training.train_cli import main as train_main

STEPS, INTERVAL = 2000, 10


def healthy_log() -> list[dict]:
    """A made-up run that shows every healthy pattern of the user's document (2 epochs of 1000 steps)."""
    out = []
    for step in range(INTERVAL, STEPS + 1, INTERVAL):
        f = step / STEPS
        kpt = -2.0 - 2.5 * f
        out.append({"mode": "train", "epoch": (step - 1) // 1000 + 1, "iter": (step - 1) % 1000 + 1, "lr": 4e-4,
                    "enc_loss_cls": 0.3 - 0.2 * f, "enc_loss_kpt": kpt - 0.8, "loss_cls": 0.4 - 0.3 * f,
                    "loss_kpt": kpt, "d0.loss_kpt": kpt + 0.2, "d0.loss_kpt_refine": kpt - 0.05,
                    "d1.loss_kpt_refine": kpt - 0.1, "trk_kpt_l1": 0.02, "det_kpt_l1": 0.018, "n_trk": 2.0,
                    "n_trk_pos": 1.6, "n_det_pos": 3.0, "trk_id_con": 0.85, "loss": 5 * kpt, "grad_norm": 50.0,
                    "memory": 1500, "time": 0.5})
    return out


def with_symptom(changes: dict, start: int = 0) -> list[dict]:
    log = healthy_log()
    for r in log[start:]:
        r.update(changes)
    return log


SYMPTOMS = {
    "n_trk_pos_zero": {"n_trk_pos": 0.0, "trk_id_con": 0.0},
    "trk_id_con_low": {"trk_id_con": 0.3},
    "loss_kpt_stuck": {"loss_kpt": -2.0, "d0.loss_kpt_refine": -2.05, "d1.loss_kpt_refine": -2.1},
    "grad_norm_high": {"grad_norm": 350.0},
    "memory_high": {"memory": 25000},
    "refine_not_better": {"d0.loss_kpt_refine": -1.0, "d1.loss_kpt_refine": -1.0},
    "trk_kpt_l1_high": {"trk_kpt_l1": 0.17, "det_kpt_l1": 0.008},
}


def test_every_rule_of_the_table_has_a_symptom_case():
    assert sorted(SYMPTOMS) == sorted(r.name for r in RULES)


def test_healthy_log_raises_nothing():
    assert diagnose_log(healthy_log()) == []


@pytest.mark.parametrize("rule", sorted(SYMPTOMS))
def test_each_symptom_raises_exactly_its_diagnosis(rule):
    found = diagnose_log(with_symptom(SYMPTOMS[rule]))
    assert [d.rule for d in found] == [rule]
    d = found[0]
    assert d.cause and d.fix and d.symptom
    assert d.expected == (rule == "trk_kpt_l1_high")  # the guide calls this one expected


def test_single_frame_runs_skip_the_track_query_rules():
    """Single-frame training (seq_length 1) has no track queries: n_trk_pos 0 is not a fault there."""
    from training.config import TrainConfig

    log = with_symptom({**SYMPTOMS["n_trk_pos_zero"], "n_trk": 0.0})
    cfg = DiagnosisConfig.from_train_config(TrainConfig(seq_length=1, grad_frames=1))
    assert not cfg.tracking
    diag = Diagnoser(replace(cfg, memory_mb=20000.0))  # pavenet-train resolves memory_mb 0 to the device's
    assert [d for r in log for d in diag.update((r["epoch"] - 1) * 1000 + r["iter"], r)] == []
    assert DiagnosisConfig.from_train_config(TrainConfig()).tracking


def test_rules_wait_for_warm_up_and_report_once():
    log = with_symptom(SYMPTOMS["trk_id_con_low"])
    diag = Diagnoser(DiagnosisConfig(after=500))
    raised = []
    for r in log:
        step = (r["epoch"] - 1) * 1000 + r["iter"]
        for d in diag.update(step, r):
            raised.append((d.rule, d.step))
    assert raised == [("trk_id_con_low", 500)]


def test_a_spike_in_the_first_steps_is_not_exploding_gradients():
    log = healthy_log()
    log[0]["grad_norm"] = 5000.0
    assert diagnose_log(log) == []


def test_thresholds_are_configurable():
    log = with_symptom({"grad_norm": 150.0})
    assert diagnose_log(log) == []
    assert [d.rule for d in diagnose_log(log, DiagnosisConfig(grad_norm=100))] == ["grad_norm_high"]


def test_broken_tracking_is_flagged_live_and_reported(tmp_path):
    """A real run whose queries are never propagated: n_trk_pos stays 0 -> a diagnosis line while
    training; pavenet-report then plots the log and its summary lists every key and the diagnosis."""
    work = tmp_path / "broken"
    assert train_main(_args(work, "--epochs", "1", "--iters-per-epoch", "12", "--set", "track_drop=1.0",
                            "--set", "track_fp=0", "--set", "diag_grad_norm=1e6",
                            "--set", "diag_after=6", "--set", "diag_window=3")) == 0
    lines = [json.loads(x) for x in (work / "log.jsonl").read_text().splitlines()]
    diags = [x for x in lines if x["mode"] == "diagnosis"]
    assert [d["rule"] for d in diags if d["level"] == "warning"] == ["n_trk_pos_zero"]
    assert diags[0]["step"] == 6 and "Track bonus not applied" in diags[0]["cause"]
    out = tmp_path / "report"
    assert report_main([str(work / "log.jsonl"), "-o", str(out), "--set", "after=6", "--set", "window=3"]) == 0
    summary = (out / "summary.md").read_text()
    keys = {k for x in lines if x["mode"] == "train" for k in x if k not in ("mode", "epoch", "iter")}
    assert all(f"`{k}`" in summary for k in keys)
    assert "NOT working" in summary and "n_trk_pos stays 0.0" in summary
    for name in ("encoder", "decoder", "refinement", "tracking", "loss", "optimisation", "resources", "validation"):
        assert (out / f"{name}.png").stat().st_size > 5000, name


def test_report_reads_a_log_that_is_still_being_written(tmp_path):
    log = healthy_log()
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in log) + '\n{"mode": "train", "epo')
    assert report_main([str(path)]) == 0
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Tracking is working" in summary and "None: no symptom" in summary


def test_report_errors_are_one_line(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing.jsonl")]) == 2
    assert "no such training log" in capsys.readouterr().err
    bad = tmp_path / "log.jsonl"
    bad.write_text('{"mode": "val"}\n')
    assert report_main([str(bad)]) == 2


def test_tensorboard_flag_without_tensorboard_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert train_main(_args(tmp_path / "tb", "--epochs", "1", "--iters-per-epoch", "2", "--tensorboard")) == 2
    assert "pip install tensorboard" in capsys.readouterr().err


def test_report_cli_help_names_every_threshold(capsys):
    with pytest.raises(SystemExit):
        report_main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("after", "window", "grad_norm", "memory_mb", "patience"))

