"""What every PAVENet command shares: one-line errors instead of tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pavenet.errors import PavenetError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`PavenetError` is printed as ``error: ...`` with exit code 2."""
    try:
        return int(main(argv) or 0)
    except PavenetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def not_implemented(command: str, issue: int) -> int:
    """Reserved command whose implementation arrives with a later issue."""
    print(f"{command}: not implemented yet (planned in issue {issue})", file=sys.stderr)
    return 3
