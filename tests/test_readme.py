"""The README runs as written: its main-job command (less the install) and every Python block."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
INSTALL = re.compile(r"^python3 -m venv \.venv && \. \.venv/bin/activate && pip install -e \. && ")


def main_job_command() -> str:
    """The README's first bash block: the install-and-run-the-main-job command."""
    block = re.search(r"```bash\n(.+?)\n```", README, re.S).group(1).strip()
    assert INSTALL.match(block), "the main job starts with a plain install (no torch)"
    return INSTALL.sub("", block)


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)\n```", README, re.S)


def _env() -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder where the main job has run, with the shipped weights where the README expects them."""
    work = tmp_path_factory.mktemp("readme")
    (work / "weights").symlink_to(ROOT / "weights")
    result = subprocess.run(main_job_command(), shell=True, cwd=work, capture_output=True, text=True,
                            timeout=600, env=_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return work, result


def test_main_job_runs_as_written(workdir):
    work, result = workdir
    assert (work / "demo" / "tracked" / "tracks.json").exists()
    assert "tracked 150 frames" in result.stdout


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_block_runs_as_written(workdir, index):
    work, _ = workdir
    code = python_blocks()[index]
    result = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=300,
                            env=_env())
    assert result.returncode == 0, f"README Python block {index} failed:\n{code}\n{result.stderr[-2000:]}"
