"""Read the nbgrader markup of an instructor notebook.

One instructor notebook gives three programs: the instructor run (solutions and hidden
tests), the student stub (what nbgrader releases) and the grading plan (test cells, with
hidden tests, that any submission is graded against).
"""

from __future__ import annotations

import ast
import enum
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
STUB = "raise NotImplementedError()"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)


class Kind(enum.StrEnum):
    """What a cell of an instructor notebook is to the grader (compares equal to its value)."""

    SETUP = "setup"  # locked, not graded
    SOLUTION = "solution"
    TEST = "test"  # graded
    CODE = "code"  # other code
    MARKDOWN = "markdown"


@dataclass(frozen=True)
class Cell:
    """One cell of an instructor notebook, as the grader sees it.

    kind: "setup" (locked, not graded), "solution", "test" (graded), "code" (other code),
    "markdown".
    """

    index: int
    kind: str
    source: str
    grade_id: str | None = None
    points: float = 0.0

    @property
    def hidden(self) -> bool:
        return BEGIN_HIDDEN in self.source


def nb_meta(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}) or {})


def classify(cell) -> Kind:
    meta = nb_meta(cell)
    if cell.cell_type != "code":
        return Kind.MARKDOWN
    if meta.get("grade") and not meta.get("solution"):
        return Kind.TEST
    if meta.get("solution"):
        return Kind.SOLUTION
    if meta.get("locked"):
        return Kind.SETUP
    return Kind.CODE


def cells(nb) -> list[Cell]:
    out = []
    for i, c in enumerate(nb.cells):
        meta = nb_meta(c)
        out.append(Cell(i, classify(c), c.source, meta.get("grade_id"), float(meta.get("points", 0) or 0)))
    return out


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _region(source: str, begin: str, end: str, replace: str) -> str:
    """Replace each ``begin``..``end`` region (markers included) by one ``replace`` line."""
    out, inside = [], False
    for line in source.splitlines():
        s = line.strip()
        if s == begin:
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + replace)
        elif s == end:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def instructor_source(source: str) -> str:
    """Solutions and hidden tests in place, marker lines removed."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in MARKERS)


def public_source(source: str) -> str:
    """A test cell as students see it: the hidden region removed."""
    out, inside = [], False
    for line in source.splitlines():
        s = line.strip()
        if s == BEGIN_HIDDEN:
            inside = True
            continue
        if s == END_HIDDEN:
            inside = False
            continue
        if not inside:
            out.append(line)
    return "\n".join(out)


def hidden_lines(source: str) -> set[int]:
    """Line numbers (1-based) of the hidden tests of a test cell, counted in its
    `instructor_source` (marker lines removed), as the grader runs it."""
    out, n, inside = set(), 0, False
    for line in source.splitlines():
        s = line.strip()
        if s in MARKERS:
            inside = {BEGIN_HIDDEN: True, END_HIDDEN: False}.get(s, inside)
            continue
        n += 1
        if inside:
            out.add(n)
    return out


def stub_source(source: str) -> str:
    """A solution cell as nbgrader releases it: each region replaced by ``raise NotImplementedError()``."""
    return _region(source, BEGIN_SOLUTION, END_SOLUTION, STUB)


def grading_plan(nb) -> list[Cell]:
    """Code cells of the instructor notebook in order, sources as they run when grading.

    Test cells keep their hidden tests; setup/other code cells are the instructor's;
    solution cells hold the instructor solution (a grader substitutes the student's).
    """
    plan = []
    for c in cells(nb):
        if c.kind == "markdown":
            continue
        plan.append(Cell(c.index, c.kind, instructor_source(c.source), c.grade_id, c.points))
    return plan


def stub_plan(nb) -> list[Cell]:
    """Like ``grading_plan`` but with the released stubs in the solution cells."""
    return [
        Cell(c.index, c.kind, stub_source(nb.cells[c.index].source) if c.kind == "solution" else c.source,
             c.grade_id, c.points)
        for c in grading_plan(nb)
    ]


def test_cells(nb) -> list[Cell]:
    return [c for c in cells(nb) if c.kind == "test"]


# --- structural checks (`make check-source`) -----------------------------------------

_GRADE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def _docstring(tree: ast.Module) -> str | None:
    """The module-level docstring of parsed cell code, or None."""
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.value.value
    return None


def test_cell_problems(source: str) -> list[str]:
    """AUTHORING.md's rules for a graded test cell (source with its markers): a one-line docstring
    first (one summary; wrapped at the line length is accepted), a public part that checks something
    (not only the docstring and comments), every bare ``assert`` with a message, no ``print``.
    Syntax errors are reported by ``lint`` itself."""
    try:
        full = ast.parse(source)  # the markers are comments: line numbers as the author sees them
        public = ast.parse(public_source(source))
    except SyntaxError:
        return []
    problems = []
    doc = _docstring(full)
    if doc is None:
        problems.append('a test cell must open with a one-line docstring saying what it checks ("""Checks ...""")')
    elif not doc.strip() or "\n\n" in doc.strip():  # one summary (wrapped at the line length is fine)
        problems.append("the test cell's docstring must be one non-empty summary line (no blank line)")
    body = public.body[1:] if _docstring(public) is not None else public.body
    if BEGIN_HIDDEN in source and not body:
        problems.append("no public part: outside the hidden region there is only a docstring or comments "
                        "(students would see a cell that checks nothing)")
    for node in ast.walk(full):
        if isinstance(node, ast.Assert) and node.msg is None:
            problems.append(f"line {node.lineno}: bare `assert` without a message (add one, or use dlt_checks)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            problems.append(f"line {node.lineno}: print(...) in a test cell (say what is wrong in an assertion message)")
    return problems


def lint(nb, expected_points: float | None = 100) -> list[str]:
    """Problems with an instructor notebook's structure; empty when it is well-formed."""
    problems = []
    ids: dict[str, int] = {}
    total = 0.0
    n_solution = 0
    for c in cells(nb):
        raw = nb.cells[c.index]
        meta = nb_meta(raw)
        where = f"cell {c.index}" + (f" ({c.grade_id})" if c.grade_id else "")
        if raw.cell_type == "code":
            if raw.get("outputs"):
                problems.append(f"{where}: has outputs (commit notebooks with outputs stripped)")
            if raw.get("execution_count") is not None:
                problems.append(f"{where}: has an execution_count (strip it)")
        if meta:
            gid = meta.get("grade_id")
            if not gid or not _GRADE_ID.match(gid):
                problems.append(f"{where}: missing or malformed grade_id {gid!r}")
            elif gid in ids:
                problems.append(f"{where}: duplicate grade_id {gid!r} (also cell {ids[gid]})")
            else:
                ids[gid] = c.index
        if c.kind == "test":
            problems += [f"{where}: {p}" for p in test_cell_problems(c.source)]
            total += c.points
            if c.points <= 0:
                problems.append(f"{where}: a graded test cell needs positive points")
            if not meta.get("locked"):
                problems.append(f"{where}: graded test cells must be locked")
            if c.source.count(BEGIN_HIDDEN) != c.source.count(END_HIDDEN):
                problems.append(f"{where}: unbalanced HIDDEN TESTS markers")
            if BEGIN_SOLUTION in c.source:
                problems.append(f"{where}: a test cell must not contain a solution region")
        if c.kind == "solution":
            n_solution += 1
            if c.source.count(BEGIN_SOLUTION) == 0 or c.source.count(BEGIN_SOLUTION) != c.source.count(END_SOLUTION):
                problems.append(f"{where}: solution cell without balanced BEGIN/END SOLUTION markers")
            if BEGIN_HIDDEN in c.source:
                problems.append(f"{where}: hidden tests inside a solution cell")
        if c.kind in ("setup", "code") and (BEGIN_HIDDEN in c.source or BEGIN_SOLUTION in c.source):
            problems.append(f"{where}: markers in a cell that is neither a solution nor a graded test cell")
        if raw.cell_type == "code":
            try:
                ast.parse(instructor_source(c.source))
            except SyntaxError as exc:
                if not c.source.lstrip().startswith(("%", "!")):
                    problems.append(f"{where}: syntax error: {exc.msg} (line {exc.lineno})")
    n_tests = sum(1 for c in cells(nb) if c.kind == "test")
    if n_tests == 0:
        problems.append("no graded test cells")
    if n_solution == 0:
        problems.append("no solution cells")
    if expected_points is not None and abs(total - expected_points) > 1e-9:
        problems.append(f"graded cells total {total:g} points, expected {expected_points:g}")
    return problems
