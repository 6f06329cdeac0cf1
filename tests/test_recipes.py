"""training/recipes: the stage scripts are valid shell and describe the shipped checkpoint's recipe."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pavenet.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "training" / "recipes"
SCRIPTS = sorted(RECIPES.glob("*.sh"))
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def literal_sets(script: Path) -> dict[str, str]:
    """Every ``--set name=value`` of a script whose value is a literal (not a shell variable)."""
    return {k: v for k, v in re.findall(r"--set (\w+)=([^\s\"$)]+)", script.read_text())}


def same(value: str, stored) -> bool:
    if isinstance(stored, bool):
        return value.lower() == str(stored).lower()
    if isinstance(stored, (int, float)):
        return float(value) == float(stored)
    return value == str(stored)


def test_both_recipes_exist():
    assert {p.name for p in SCRIPTS} == {"cpu_stage.sh", "gpu_stage.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_and_explains_itself(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, "no arguments: usage and exit status 2, nothing run"
    assert f"training/recipes/{script.name} FROM.pt WORKDIR" in result.stdout


def test_cpu_recipe_is_the_shipped_checkpoints():
    state = load_checkpoint(ROOT / "weights" / "pavenet-t.pt")
    stored = {**state["train_config"], **state["model_config"]}
    sets = literal_sets(RECIPES / "cpu_stage.sh")
    assert len(sets) >= 12
    differ = {k: (v, stored.get(k, "missing")) for k, v in sets.items() if k not in stored or not same(v, stored[k])}
    assert not differ, f"recipe vs shipped checkpoint: {differ}"
    text = (RECIPES / "cpu_stage.sh").read_text()
    assert int(re.search(r"BATCH:-(\d+)", text).group(1)) == stored["batch_size"]
    assert float(re.search(r"LR:-([\d.e-]+)", text).group(1)) == stored["lr"]


def test_gpu_recipe_trains_the_same_model():
    model_keys = set(load_checkpoint(ROOT / "weights" / "pavenet-t.pt")["model_config"])
    cpu, gpu = (literal_sets(RECIPES / n) for n in ("cpu_stage.sh", "gpu_stage.sh"))
    assert {k: v for k, v in cpu.items() if k in model_keys} == {k: v for k, v in gpu.items() if k in model_keys}
