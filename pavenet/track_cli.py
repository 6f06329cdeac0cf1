"""`pavenet-track`: reserved; implemented in issue 5."""

from __future__ import annotations

import sys

from pavenet.cli_utils import not_implemented


def main(argv: list[str] | None = None) -> int:
    return not_implemented("pavenet-track", 5)


if __name__ == "__main__":
    sys.exit(main())
