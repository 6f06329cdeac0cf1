"""`pavenet-report`: plots and a one-page summary of a training log (works while the run goes on).

Examples:
    pavenet-report runs/pavenet-t-v1/log.jsonl              # writes runs/pavenet-t-v1/report/
    pavenet-report runs/pavenet-t-v1 -o /tmp/report --set after=100
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from pavenet.cli_utils import run_cli
from pavenet.errors import PavenetError
from pavenet.model.config import coerce_value
from training.loop.diagnosis import DiagnosisConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pavenet-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="a run's log.jsonl, or its folder")
    p.add_argument("-o", "--out", help="output folder (default: report/ next to the log)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="diagnosis threshold, e.g. --set after=100 --set grad_norm=300 (names: "
                        + ", ".join(f.name for f in fields(DiagnosisConfig)) + ")")
    return p


def _diag_config(items: list[str]) -> DiagnosisConfig:
    base = DiagnosisConfig()
    known = {f.name: f for f in fields(DiagnosisConfig)}
    changes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise PavenetError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(known)}")
        changes[name] = coerce_value(name, value, type(getattr(base, name)))
    return DiagnosisConfig(**{**{k: getattr(base, k) for k in known}, **changes})


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from training.reports.report import make_report

    summary, images, diagnoses = make_report(args.log, args.out, _diag_config(args.set))
    faults = [d for d in diagnoses if not d.expected]
    print(f"report: {len(images)} plots and {summary}; {len(faults)} warning(s), "
          f"{len(diagnoses) - len(faults)} expected note(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
