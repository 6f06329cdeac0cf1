"""Errors that reach users as one clear line (the CLIs print them without a traceback)."""

from __future__ import annotations

from pathlib import Path


class PavenetError(Exception):
    """A problem with the user's input or setup, explained in one line."""


class DataError(PavenetError):
    """A dataset, annotation, image or video file that cannot be used.

    The message always names the file and the problem.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
