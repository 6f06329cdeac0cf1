"""What every PAVENet command shares: one-line errors instead of tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pavenet.errors import PavenetError

# Optional packages and the extra that installs them (pyproject.toml's optional-dependencies).
EXTRAS = {"torch": "train", "pycocotools": "train", "motmetrics": "train", "onnx": "train", "onnxscript": "train",
          "matplotlib": "train", "gradio": "app", "gradio_client": "app"}
CHECKOUT = Path(__file__).resolve().parents[1]


def install_hint(extra: str) -> str:
    """How to install an extra: ``pip install -e '.[extra]'`` in a source checkout (run from its
    folder), else ``pip install 'pavenet[extra]'``."""
    if (CHECKOUT / "pyproject.toml").exists():
        return f"pip install -e '{CHECKOUT}[{extra}]'" if Path.cwd().resolve() != CHECKOUT \
            else f"pip install -e '.[{extra}]'"
    return f"pip install 'pavenet[{extra}]'"


def missing_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """One line for a missing optional package, or None when ``exc`` is about anything else."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return f"{command} needs {root} (the '{extra}' extra): {install_hint(extra)}"


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`PavenetError` is printed as ``error: ...`` with exit code 2."""
    try:
        return int(main(argv) or 0)
    except PavenetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        line = missing_extra(exc, Path(sys.argv[0]).name or "this command")
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def not_implemented(command: str, issue: int) -> int:
    """Reserved command whose implementation arrives with a later issue."""
    print(f"{command}: not implemented yet (planned in issue {issue})", file=sys.stderr)
    return 3
