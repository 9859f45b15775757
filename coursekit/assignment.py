"""One problem set as every stage sees it: its manifest entry, its parsed instructor notebook
(read once), what grading needs from it, and the layout of a grading batch's output folder.

Nothing else in `coursekit` parses an instructor notebook; repository paths come from
`manifest` (`ProblemSet`, `Layout`) and batch output paths from `Outputs`.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nbformat

from . import notebook
from .manifest import ProblemSet


class Assignment:
    """A problem set plus its instructor notebook, parsed once and shared by every stage."""

    def __init__(self, ps: ProblemSet | None, source_nb=None):
        """``ps`` None: a grading plan alone (``source_nb`` given), as the otter zip carries it."""
        if ps is None and source_nb is None:
            raise ValueError("an Assignment needs a problem set or a notebook")
        self.ps = ps
        self._source_nb = source_nb

    @classmethod
    def of(cls, ps: ProblemSet) -> Assignment:
        """The assignment of ``ps``; re-parsed only when its instructor notebook changes on disk."""
        stat = ps.source_notebook.stat()
        return _cached(ps, str(ps.source_notebook.resolve()), stat.st_mtime_ns, stat.st_size)

    @property
    def id(self) -> str:
        return self.ps.id if self.ps else ""

    @cached_property
    def source_nb(self):
        """The instructor notebook (nbformat v4). Treat as read-only: it is shared."""
        return self._source_nb if self._source_nb is not None else notebook.read(self.ps.source_notebook)

    @cached_property
    def source_bytes(self) -> bytes:
        return self.ps.source_notebook.read_bytes()

    @cached_property
    def cells(self) -> list[notebook.Cell]:
        return notebook.cells(self.source_nb)

    @cached_property
    def course_code(self) -> frozenset[str]:
        """The instructor's unlabelled code cells (figures, demos), stripped: a submission's cell
        equal to one of them is the course's own, not the student's."""
        return frozenset(c.source.strip() for c in self.plan if c.kind == "code")

    @cached_property
    def modules(self) -> list[str]:
        """Dotted names of the modules the notebook's code imports (for the grader to preload)."""
        import ast

        names = set()
        for c in self.cells:
            if c.kind == "markdown":
                continue
            try:
                tree = ast.parse(notebook.instructor_source(c.source))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(al.name for al in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
        return sorted(names)

    @cached_property
    def tests(self) -> list[notebook.Cell]:
        """The graded test cells, in notebook order."""
        return [c for c in self.cells if c.kind == "test"]

    @cached_property
    def max_scores(self) -> dict[str, float]:
        return {t.grade_id: t.points for t in self.tests}

    @cached_property
    def plan(self) -> list[notebook.Cell]:
        """The grading plan (setup and test cells with hidden tests, instructor solutions)."""
        return notebook.grading_plan(self.source_nb)

    @cached_property
    def stub_plan(self) -> list[notebook.Cell]:
        return notebook.stub_plan(self.source_nb)

    @cached_property
    def solutions(self) -> dict[str, str]:
        """Solution grade_id -> the instructor's source of that cell, markers removed."""
        return {c.grade_id: notebook.instructor_source(c.source) for c in self.cells if c.kind == "solution"}

    @cached_property
    def secrets(self) -> list[str]:
        """Lines of hidden tests and solution regions long enough to be worth redacting."""
        return self.secret_lines(12, comments=False)

    def secret_lines(self, min_chars: int, comments: bool) -> list[str]:
        """Stripped lines of the hidden tests and solution regions (a solution cell without
        markers counts as a whole) of at least ``min_chars``, longest first."""
        secret = set()
        for c in self.cells:
            if c.kind not in ("test", "solution"):
                continue
            begin, end = (notebook.BEGIN_HIDDEN, notebook.END_HIDDEN) if c.kind == "test" else \
                (notebook.BEGIN_SOLUTION, notebook.END_SOLUTION)
            inside = c.kind == "solution" and begin not in c.source
            for line in c.source.splitlines():
                s = line.strip()
                if s == begin:
                    inside = True
                elif s == end:
                    inside = False
                elif inside and len(s) >= min_chars and (comments or not s.startswith("#")):
                    secret.add(s)
        return sorted(secret, key=len, reverse=True)

    def grading_notebook(self) -> dict:
        """The instructor notebook with its solution regions stubbed (setup and test cells, hidden
        tests included, no solution), as JSON: what the otter zip grades against."""
        nb = copy.deepcopy(self.source_nb)
        for cell in nb.cells:
            if notebook.classify(cell) == "solution":
                cell.source = notebook.stub_source(cell.source)
        return json.loads(nbformat.writes(nb))

    def release_nb(self):
        """The committed student notebook (release/psNN/psNN.ipynb)."""
        return notebook.read(self.ps.release_notebook)


@functools.lru_cache(maxsize=32)
def _cached(ps: ProblemSet, path: str, mtime_ns: int, size: int) -> Assignment:  # path: copies of a course differ
    return Assignment(ps)


@dataclass(frozen=True)
class Outputs:
    """Where a grading batch of one problem set writes: ``<root>/submitted/<ps>/``, the saved
    results ``<root>/autograded/<ps>/<student>.json``, ``<root>/grades_<ps>.csv`` and
    ``<root>/feedback/<ps>/<student>/<ps>.html``, the class summary ``<root>/summary_<ps>.html``
    (with two PNGs beside it). ``root`` is `make grade`'s OUT (default grading/)."""

    root: Path
    ps_id: str

    @property
    def submitted(self) -> Path:
        return self.root / "submitted" / self.ps_id

    @property
    def saved(self) -> Path:
        return self.root / "autograded" / self.ps_id

    def saved_result(self, student: str) -> Path:
        return self.saved / f"{student}.json"

    @property
    def csv(self) -> Path:
        return self.root / f"grades_{self.ps_id}.csv"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback" / self.ps_id

    def feedback_page(self, student: str) -> Path:
        return self.feedback / student / f"{self.ps_id}.html"

    @property
    def feedback_pattern(self) -> str:
        return f"{self.feedback}/<student>/{self.ps_id}.html"

    @property
    def not_graded(self) -> Path:  # files of the batches that belong to nobody, with the reason
        return self.root / f"not_graded_{self.ps_id}.json"

    @property
    def summary_html(self) -> Path:  # the class summary page and its two figures
        return self.root / f"summary_{self.ps_id}.html"

    @property
    def totals_png(self) -> Path:
        return self.root / f"summary_{self.ps_id}_totals.png"

    @property
    def cells_png(self) -> Path:
        return self.root / f"summary_{self.ps_id}_cells.png"

    @property
    def default_gradebook(self) -> Path:
        return self.root / "gradebook.db"
