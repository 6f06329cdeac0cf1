"""The installed commands, run as a user runs them."""

import shutil
import subprocess
import sys

import pytest

from pavenet.video import read_video
from training.data.posetrack import read_posetrack
from training.data_cli import main as data_main

COMMANDS = ["pavenet-data", "pavenet-train", "pavenet-export", "pavenet-track", "pavenet-eval", "pavenet-app"]


def test_synth_then_show(tmp_path, capsys):
    out = tmp_path / "data"
    assert data_main(["synth", "--out", str(out), "--videos", "2", "--frames", "6", "--split", "val",
                      "--seed", "1", "--width", "96", "--height", "64", "--set", "min_people=2", "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "wrote 2 val videos (12 frames" in summary and "frames/s" in summary
    files = sorted((out / "posetrack_data" / "val").glob("*.json"))
    assert len(files) == 2
    seq = read_posetrack(files[0])
    assert len(seq) == 6 and seq.clip([0]).frames[0].image.shape == (64, 96, 3)
    assert data_main(["show", str(out), "--quiet"]) == 0
    assert "rendered 2 videos (12 frames)" in capsys.readouterr().out
    rendered = read_video(out / "show" / f"{seq.name}.mp4")
    assert len(rendered) == 6


def test_jpg_frames(tmp_path):
    assert data_main(["synth", "--out", str(tmp_path), "--videos", "1", "--frames", "3", "--format", "jpg",
                      "--width", "64", "--height", "48", "--quiet"]) == 0
    assert len(list((tmp_path / "images" / "val").glob("*/*.jpg"))) == 3


def test_errors_are_one_line(tmp_path, capsys):
    assert data_main(["show", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nothing: no such file or folder" in err and "\n" not in err
    assert data_main(["synth", "--out", str(tmp_path), "--set", "people=3"]) == 2
    assert "unknown synthetic data option key 'people'" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_are_installed(command):
    exe = shutil.which(command) or shutil.which(command, path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, f"{command} is not on PATH: is the package installed?"
    if command == "pavenet-data":
        result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "synth" in result.stdout and "show" in result.stdout


@pytest.mark.parametrize("value", ["-1", "0", "x"])
def test_track_rejects_bad_max_frames(value, capsys):
    from pavenet.track_cli import main as track_main

    with pytest.raises(SystemExit) as exc:
        track_main(["video.mp4", "--max-frames", value])
    assert exc.value.code == 2
    assert "--max-frames" in capsys.readouterr().err


def test_track_reports_a_missing_input_before_the_model(tmp_path, capsys):
    from pavenet.track_cli import main as track_main

    code = track_main([str(tmp_path / "missing.mp4"), "--weights", str(tmp_path / "missing.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "missing.mp4" in err and "missing.onnx" not in err and len(err.splitlines()) == 1


def test_missing_extra_is_one_line_with_the_install_hint():
    """A command whose extra is not installed names the package and how to install it."""
    code = BLOCK_EXTRAS + "from training.eval_cli import main\nsys.exit(main(['--data', 'synthetic:val']))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "[train]" in lines[0], result.stderr


def test_people_count_is_singular_for_one():
    from pavenet.draw import people_count

    assert people_count(1) == "1 person" and people_count(0) == "0 people" and people_count(3) == "3 people"


BLOCK_EXTRAS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "motmetrics", "pycocotools", "gradio"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""
