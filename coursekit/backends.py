"""The three ways a submission can be graded, behind one interface: this project's grader,
plain ``nbgrader autograde`` and ``otter run`` with the Gradescope zip. `validate` proves they
agree; `bench` times them against each other."""

from __future__ import annotations

from pathlib import Path

from . import autograder, batch, gradebook
from .assignment import Assignment
from .nbg import ScratchCourse
from .sandbox import Limits


class Backend:
    """grade(path, student) -> per grade_id score; close() when done."""

    name = "?"

    def grade(self, path: Path, student: str) -> dict[str, float]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Coursekit(Backend):
    """This project's grader (two processes per submission)."""

    name = "coursekit"

    def __init__(self, a: Assignment, limits: Limits = Limits()):
        self.a, self.limits = a, limits
        self.messages: dict[str, dict[str, str]] = {}  # student -> grade_id -> why it failed

    def grade(self, path: Path, student: str) -> dict[str, float]:
        g, _ = batch.grade_file(self.a, path, student, self.limits)
        if g.error:
            raise RuntimeError(g.error)
        self.messages[student] = g.messages
        return g.scores


class Nbgrader(Backend):
    """Plain nbgrader in a scratch course (which also makes a fresh release, `release_dir`)."""

    name = "nbgrader"

    def __init__(self, a: Assignment, root: Path | None = None):
        self.course = ScratchCourse(a.ps, root)
        with gradebook.quiet():
            self.release_dir = self.course.generate()

    def submit(self, path: Path, student: str) -> None:
        self.course.submit(student, path)

    def autograde(self, student: str) -> dict[str, float]:
        with gradebook.quiet():  # nbgrader's own SAWarnings
            return self.course.autograde(student)

    def grade(self, path: Path, student: str) -> dict[str, float]:
        self.submit(path, student)
        return self.autograde(student)

    def close(self) -> None:
        self.course.close()


class Otter(Backend):
    """``otter run`` with the Gradescope zip built under the same limits."""

    name = "otter"

    def __init__(self, a: Assignment, limits: Limits = Limits()):
        self.zip = autograder.build(a, limits)

    def grade(self, path: Path, student: str) -> dict[str, float]:
        return autograder.run(self.zip, path)
