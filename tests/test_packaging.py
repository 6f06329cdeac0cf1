"""Project-level promises: the runtime imports without torch; CI runs the README's test command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_runtime_and_data_import_without_torch():
    code = BLOCK_TORCH + "import pavenet, pavenet.draw, pavenet.video, pavenet.geometry, pavenet.tracker\n" \
        "import pavenet.track_cli\n" \
        "import pavenet.synth, pavenet.clip, training.data.posetrack, training.data.augment, training.data.coco\n" \
        "import training.data_cli\n" \
        "assert 'torch' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_pavenet_never_imports_the_other_packages():
    for path in (ROOT / "pavenet").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (training|export|app)\b", text, re.M), path


def test_app_and_export_stand_on_the_library_only():
    """app/ and export/ use pavenet/ (synthetic data included), never the training package."""
    for folder in ("app", "export"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"^\s*(from|import) training\b", text, re.M), path


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme, re.S)
    assert match, "README.md marks its test command with <!-- test-command -->"
    command = match.group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text()
